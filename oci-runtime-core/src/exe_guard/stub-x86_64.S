/*
 * berth exe-guard stub, x86_64 (see ../exe_guard.rs). A complete static ELF: the headers are
 * written out below and the whole file is the .text section (assemble, then objcopy -O binary;
 * regen.sh does it). Loaded at 0x400000; position-independent code anyway.
 *
 * argv = [MARKER, path, argv0, argv1, ...]: execve(path, &argv[2], envp).
 * argv[0] != MARKER (started as the interpreter of "#!/proc/self/exe" or similar): exit 126.
 * execve failed: a fixed message on fd 2, exit 127.
 */
	.set	BASE, 0x400000
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
	mov	(%rsp), %rcx			/* argc */
	cmp	$2, %rcx
	jb	refuse
	lea	8(%rsp), %rsi			/* argv */
	mov	(%rsi), %rax			/* argv[0] */
	lea	marker(%rip), %rdx
1:	movb	(%rax), %bl
	cmpb	(%rdx), %bl
	jne	refuse
	inc	%rax
	inc	%rdx
	test	%bl, %bl
	jnz	1b
	mov	8(%rsi), %rdi			/* path = argv[1] */
	lea	16(%rsp,%rcx,8), %rdx		/* envp = &argv[argc + 1] */
	add	$16, %rsi			/* &argv[2] */
	mov	$59, %eax			/* execve */
	syscall
	mov	$1, %eax			/* write(2, msg, len) */
	mov	$2, %edi
	lea	msg(%rip), %rsi
	mov	$(msg_end - msg), %edx
	syscall
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
