/*
 * memcpy, memmove, memset, memcmp for the Swift runtime and the compiler's own calls.
 * Written in assembly so the compiler cannot turn a copy loop back into a call to itself.
 */
    .macro FUNC name
    .section .text.\name, "ax", @progbits
    .globl \name
    .type \name, @function
\name:
    .endm

FUNC memcpy
    movq %rdi, %rax
    movq %rdx, %rcx
    rep movsb
    ret

FUNC memmove
    movq %rdi, %rax
    cmpq %rsi, %rdi
    jbe 1f                       /* dst below src: forward copy is safe */
    leaq (%rsi, %rdx), %rcx
    cmpq %rcx, %rdi
    jae 1f                       /* no overlap */
    leaq -1(%rdi, %rdx), %rdi    /* overlap with dst above src: copy backwards */
    leaq -1(%rsi, %rdx), %rsi
    movq %rdx, %rcx
    std
    rep movsb
    cld
    ret
1:  movq %rdx, %rcx
    rep movsb
    ret

FUNC memset
    movq %rdi, %r9
    movl %esi, %eax
    movq %rdx, %rcx
    rep stosb
    movq %r9, %rax
    ret

FUNC memcmp
    xorl %eax, %eax
    testq %rdx, %rdx
    jz 2f
1:  movzbl (%rdi), %eax
    movzbl (%rsi), %ecx
    subl %ecx, %eax
    jnz 2f
    incq %rdi
    incq %rsi
    decq %rdx
    jnz 1b
2:  ret
