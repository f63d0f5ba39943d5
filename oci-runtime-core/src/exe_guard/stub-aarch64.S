/*
 * berth exe-guard stub, aarch64 (see ../exe_guard.rs and stub-x86_64.S: same contract).
 * A complete static ELF, headers written out below; regen.sh assembles it.
 */
	.set	BASE, 0x400000
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
	cmp	x9, #2
	b.lo	refuse
	add	x10, sp, #8			/* argv */
	ldr	x0, [x10]			/* argv[0] */
	adr	x1, marker
1:	ldrb	w2, [x0], #1
	ldrb	w3, [x1], #1
	cmp	w2, w3
	b.ne	refuse
	cbnz	w2, 1b
	ldr	x0, [x10, #8]			/* path = argv[1] */
	add	x1, x10, #16			/* &argv[2] */
	add	x2, x10, x9, lsl #3
	add	x2, x2, #8			/* envp = &argv[argc + 1] */
	mov	x8, #221			/* execve */
	svc	#0
	mov	x0, #2				/* write(2, msg, len) */
	adr	x1, msg
	mov	x2, #(msg_end - msg)
	mov	x8, #64
	svc	#0
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
