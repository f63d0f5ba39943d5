/*
 * berth exe-guard stub, x86_64 (see ../exe_guard.rs). A complete static ELF: the headers are
 * written out below and the whole file is the .text section (assemble, then objcopy -O binary;
 * regen.sh does it). Loaded at 0x400000; position-independent code anyway.
 *
 * argv = [MARKER, fd, path, argv0, argv1, ...]: fcntl(fd, F_SETFD, FD_CLOEXEC), then
 * execve(path, &argv[3], envp). fd (decimal; empty or not all digits: none) is the init's
 * report fd, left open across the exec of this stub only: a successful execve closes it, so
 * the reader's EOF means "started" (if the fcntl fails, say under seccomp, the fd is closed
 * at once: no report then, but never a leaked fd).
 * execve failed: the init's failure record on fd (ChildFailure::Init, InitStep::Exec,
 * index 2, errno), with SIGPIPE blocked (a vanished reader gives EPIPE, not a signal);
 * if it can't be written, a fixed message on fd 2 instead; exit 127.
 * argv[0] != MARKER (started as the interpreter of "#!/proc/self/exe" or similar): exit 126.
 */
	.set	BASE, 0x400000
	/* The record's first 4 bytes: 'E', source 0 (Init), InitStep::Exec, index 2 (low byte). */
	.set	STEP_EXEC, 18
	.set	INDEX, 2
	.set	RECORD_HEAD, 'E' | (STEP_EXEC << 16) | (INDEX << 24)
	.set	RECORD_LEN, 14
	.text
ehdr:
	.byte	0x7f, 'E', 'L', 'F', 2, 1, 1, 0	/* ELFCLASS64, little endian, EV_CURRENT, SYSV */
	.quad	0
	.word	2				/* e_type: ET_EXEC */
	.word	62				/* e_machine: EM_X86_64 */
	.long	1				/* e_version */
	.quad	BASE + (_start - ehdr)		/* e_entry */
	.quad	phdr - ehdr			/* e_phoff */
	.quad	0				/* e_shoff: no sections */
	.long	0				/* e_flags */
	.word	64				/* e_ehsize */
	.word	56				/* e_phentsize */
	.word	2				/* e_phnum */
	.word	0, 0, 0				/* e_shentsize, e_shnum, e_shstrndx */
phdr:
	.long	1				/* PT_LOAD */
	.long	5				/* PF_R | PF_X */
	.quad	0				/* p_offset */
	.quad	BASE, BASE			/* p_vaddr, p_paddr */
	.quad	end - ehdr, end - ehdr		/* p_filesz, p_memsz */
	.quad	0x1000				/* p_align */
	.long	0x6474e551			/* PT_GNU_STACK: a non-executable stack */
	.long	6				/* PF_R | PF_W */
	.quad	0, 0, 0, 0, 0, 0x10

_start:
	mov	(%rsp), %r14			/* argc */
	cmp	$3, %r14
	jb	refuse
	lea	8(%rsp), %r13			/* argv */
	mov	(%r13), %rax			/* argv[0] */
	lea	marker(%rip), %rdx
1:	movb	(%rax), %bl
	cmpb	(%rdx), %bl
	jne	refuse
	inc	%rax
	inc	%rdx
	test	%bl, %bl
	jnz	1b
	mov	8(%r13), %rax			/* argv[1]: the report fd, decimal */
	xor	%r12d, %r12d
	cmpb	$0, (%rax)
	je	nofd
2:	movzbl	(%rax), %ecx
	test	%ecx, %ecx
	jz	setfd
	sub	$'0', %ecx
	cmp	$9, %ecx
	ja	nofd
	imul	$10, %r12d, %r12d
	add	%ecx, %r12d
	inc	%rax
	jmp	2b
nofd:	mov	$-1, %r12d
setfd:	mov	$72, %eax			/* fcntl(fd, F_SETFD, FD_CLOEXEC) */
	mov	%r12d, %edi
	mov	$2, %esi
	mov	$1, %edx
	syscall
	test	%rax, %rax
	jz	3f
	mov	$3, %eax			/* failed (seccomp?): close(fd), never leak it */
	mov	%r12d, %edi
	syscall
	mov	$-1, %r12d
3:	mov	16(%r13), %rdi			/* path = argv[2] */
	lea	24(%r13), %rsi			/* &argv[3] */
	lea	8(%r13,%r14,8), %rdx		/* envp = &argv[argc + 1] */
	mov	$59, %eax			/* execve */
	syscall
	neg	%eax				/* errno */
	mov	%eax, %ebx
	push	$0x1000				/* sigset: SIGPIPE (13) */
	mov	$14, %eax			/* rt_sigprocmask(SIG_BLOCK, &set, NULL, 8) */
	xor	%edi, %edi
	mov	%rsp, %rsi
	xor	%edx, %edx
	mov	$8, %r10d
	syscall
	sub	$8, %rsp			/* the record: 16 bytes on the stack */
	movq	$RECORD_HEAD, (%rsp)		/* bytes 0-7 (4-7: zero) */
	movq	$0, 8(%rsp)			/* bytes 8-15 */
	mov	%ebx, 7(%rsp)			/* errno, bytes 7-10 */
	mov	$1, %eax			/* write(fd, record, RECORD_LEN) */
	mov	%r12d, %edi
	mov	%rsp, %rsi
	mov	$RECORD_LEN, %edx
	syscall
	cmp	$RECORD_LEN, %rax
	je	failed
	mov	$1, %eax			/* write(2, msg, len) */
	mov	$2, %edi
	lea	msg(%rip), %rsi
	mov	$(msg_end - msg), %edx
	syscall
failed:
	mov	$127, %edi
	jmp	out
refuse:
	mov	$126, %edi
out:
	mov	$231, %eax			/* exit_group */
	syscall
	hlt

marker:	.asciz	"berth exe-guard"
msg:	.ascii	"berth: exec of the container process failed\n"
msg_end:
end:
