/*
 * berth exe-guard stub, aarch64 (see ../exe_guard.rs and stub-x86_64.S: same contract).
 * A complete static ELF, headers written out below; regen.sh assembles it.
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
	.hword	2				/* e_type: ET_EXEC */
	.hword	183				/* e_machine: EM_AARCH64 */
	.word	1				/* e_version */
	.quad	BASE + (_start - ehdr)		/* e_entry */
	.quad	phdr - ehdr			/* e_phoff */
	.quad	0				/* e_shoff: no sections */
	.word	0				/* e_flags */
	.hword	64				/* e_ehsize */
	.hword	56				/* e_phentsize */
	.hword	2				/* e_phnum */
	.hword	0, 0, 0				/* e_shentsize, e_shnum, e_shstrndx */
phdr:
	.word	1				/* PT_LOAD */
	.word	5				/* PF_R | PF_X */
	.quad	0				/* p_offset */
	.quad	BASE, BASE			/* p_vaddr, p_paddr */
	.quad	end - ehdr, end - ehdr		/* p_filesz, p_memsz */
	.quad	0x10000				/* p_align */
	.word	0x6474e551			/* PT_GNU_STACK: a non-executable stack */
	.word	6				/* PF_R | PF_W */
	.quad	0, 0, 0, 0, 0, 0x10

	.balign	4
_start:
	ldr	x9, [sp]			/* argc */
	cmp	x9, #3
	b.lo	refuse
	add	x10, sp, #8			/* argv */
	ldr	x0, [x10]			/* argv[0] */
	adr	x1, marker
1:	ldrb	w2, [x0], #1
	ldrb	w3, [x1], #1
	cmp	w2, w3
	b.ne	refuse
	cbnz	w2, 1b
	ldr	x0, [x10, #8]			/* argv[1]: the report fd, decimal */
	mov	w19, #0
	ldrb	w2, [x0]
	cbz	w2, nofd
	mov	w3, #10
2:	ldrb	w2, [x0], #1
	cbz	w2, setfd
	sub	w2, w2, #'0'
	cmp	w2, #9
	b.hi	nofd
	madd	w19, w19, w3, w2		/* fd = fd * 10 + digit */
	b	2b
nofd:	mov	w19, #-1
setfd:	sxtw	x0, w19				/* fcntl(fd, F_SETFD, FD_CLOEXEC) */
	mov	x1, #2
	mov	x2, #1
	mov	x8, #25
	svc	#0
	cbz	x0, 3f
	sxtw	x0, w19				/* failed (seccomp?): close(fd), never leak it */
	mov	x8, #57
	svc	#0
	mov	w19, #-1
3:	ldr	x0, [x10, #16]			/* path = argv[2] */
	add	x1, x10, #24			/* &argv[3] */
	add	x2, x10, x9, lsl #3
	add	x2, x2, #8			/* envp = &argv[argc + 1] */
	mov	x8, #221			/* execve */
	svc	#0
	neg	w20, w0				/* errno */
	sub	sp, sp, #16
	mov	x1, #0x1000			/* sigset: SIGPIPE (13) */
	str	x1, [sp]
	mov	x0, #0				/* rt_sigprocmask(SIG_BLOCK, &set, NULL, 8) */
	mov	x1, sp
	mov	x2, #0
	mov	x3, #8
	mov	x8, #135
	svc	#0
	movz	x1, #(RECORD_HEAD & 0xffff)	/* the record: 16 bytes on the stack */
	movk	x1, #(RECORD_HEAD >> 16), lsl #16
	str	x1, [sp]			/* bytes 0-7 (4-7: zero) */
	str	xzr, [sp, #8]			/* bytes 8-15 */
	lsr	w2, w20, #8
	strb	w20, [sp, #7]			/* errno, bytes 7-10 (byte stores: */
	strh	w2, [sp, #8]			/* no unaligned access) */
	lsr	w2, w20, #24
	strb	w2, [sp, #10]
	sxtw	x0, w19				/* write(fd, record, RECORD_LEN) */
	mov	x1, sp
	mov	x2, #RECORD_LEN
	mov	x8, #64
	svc	#0
	cmp	x0, #RECORD_LEN
	b.eq	failed
	mov	x0, #2				/* write(2, msg, len) */
	adr	x1, msg
	mov	x2, #(msg_end - msg)
	mov	x8, #64
	svc	#0
failed:
	mov	x0, #127
	b	out
refuse:
	mov	x0, #126
out:
	mov	x8, #94				/* exit_group */
	svc	#0
	brk	#0

marker:	.asciz	"berth exe-guard"
msg:	.ascii	"berth: exec of the container process failed\n"
msg_end:
end:
