/*
 * x86_64 trap entry: 256 IDT stubs that build a TrapFrame and call the Swift dispatcher.
 *
 * Invariants: every stub pushes exactly one error-code slot (a zero where the CPU pushes none)
 * and the vector, so the frame layout is the same for all vectors and matches `TrapFrame` in
 * Arch/x86_64/Traps.swift field for field. The FPU/SSE state of the interrupted code is saved
 * around the Swift call (fxsave), because Swift code uses SSE registers freely. The frame is
 * 16-byte aligned at the call, as the System V ABI requires.
 */
    .macro TRAP_STUB vector
    .p2align 4
trap_stub_\vector:
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    pushq $0
    .endif
    pushq $\vector
    jmp trap_common
    .endm

    .section .text.trap_stubs, "ax", @progbits
    .altmacro
    .set i, 0
    .rept 256
    TRAP_STUB %i
    .set i, i + 1
    .endr

trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi                 /* TrapFrame* */
    movq %rsp, %rbx                 /* callee-saved: frame survives the call */
    subq $512, %rsp
    fxsave (%rsp)
    cld
    call x86_trap_dispatch
    fxrstor (%rsp)
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp                  /* vector and error code */
    iretq

    .section .rodata.trap_stub_table, "a", @progbits
    .p2align 3
trap_stub_table:
    .macro STUB_ADDR vector
    .quad trap_stub_\vector
    .endm
    .set i, 0
    .rept 256
    STUB_ADDR %i
    .set i, i + 1
    .endr

/* void x86_idt_install(void): fill the IDT with interrupt gates to the stubs and load it. */
    .section .text.x86_idt_install, "ax", @progbits
    .globl x86_idt_install
x86_idt_install:
    leaq idt_table(%rip), %rdi
    leaq trap_stub_table(%rip), %rsi
    xorl %ecx, %ecx
1:  movq (%rsi, %rcx, 8), %rax
    movw %ax, (%rdi)                /* offset 15:0 */
    movw $0x08, 2(%rdi)             /* kernel code selector */
    xorl %edx, %edx
    cmpl $8, %ecx                   /* #DF runs on IST 1: a stack overflow cannot recurse */
    sete %dl
    movb %dl, 4(%rdi)               /* IST index */
    movb $0x8E, 5(%rdi)             /* present, DPL 0, 64-bit interrupt gate */
    shrq $16, %rax
    movw %ax, 6(%rdi)               /* offset 31:16 */
    shrq $16, %rax
    movl %eax, 8(%rdi)              /* offset 63:32 */
    movl $0, 12(%rdi)
    addq $16, %rdi
    incl %ecx
    cmpl $256, %ecx
    jne 1b
    leaq idt_descriptor(%rip), %rax
    lidt (%rax)
    ret

    .section .data.idt, "aw", @progbits
    .p2align 4
idt_descriptor:
    .word 256 * 16 - 1
    .quad idt_table

    .section .bss.idt, "aw", @nobits
    .p2align 12
idt_table:
    .skip 256 * 16
