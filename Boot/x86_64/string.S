/*
 * memcpy, memmove, memset, memcmp for the Swift runtime and the compiler's own calls.
 * Written in assembly so the compiler cannot turn a copy loop back into a call to itself.
 * Bulk work moves 64 bytes per iteration through SSE registers (xmm0-3, caller-saved; trap
 * entry saves the interrupted state with fxsave): QEMU's TCG runs each `rep movs` iteration
 * as a helper call, so a 64 KiB copy with rep movsb measured ~2000x a 4 KiB store loop, with
 * rep movsq ~350x, while TCG turns this loop into host vector moves. Loads of a 64-byte block
 * happen before its stores, so the forward loop is also a correct memmove when dst < src.
 */
    .macro FUNC name
    .section .text.\name, "ax", @progbits
    .globl \name
    .type \name, @function
\name:
    .endm

FUNC memcpy
    movq %rdi, %rax
forward_copy:
    cmpq $64, %rdx
    jb 2f
1:  movups (%rsi), %xmm0
    movups 16(%rsi), %xmm1
    movups 32(%rsi), %xmm2
    movups 48(%rsi), %xmm3
    movups %xmm0, (%rdi)
    movups %xmm1, 16(%rdi)
    movups %xmm2, 32(%rdi)
    movups %xmm3, 48(%rdi)
    addq $64, %rsi
    addq $64, %rdi
    subq $64, %rdx
    cmpq $64, %rdx
    jae 1b
2:  movq %rdx, %rcx
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
1:  jmp forward_copy

FUNC memset
    movq %rdi, %r9
    movzbl %sil, %eax
    movabsq $0x0101010101010101, %r8
    imulq %r8, %rax                      /* the byte in all eight lanes */
    movq %rax, %xmm0
    punpcklqdq %xmm0, %xmm0              /* ... and in all sixteen */
    cmpq $64, %rdx
    jb 2f
1:  movups %xmm0, (%rdi)
    movups %xmm0, 16(%rdi)
    movups %xmm0, 32(%rdi)
    movups %xmm0, 48(%rdi)
    addq $64, %rdi
    subq $64, %rdx
    cmpq $64, %rdx
    jae 1b
2:  movq %rdx, %rcx
    rep stosb
    movq %r9, %rax
    ret

/*
 * zero_pages(rdi = page-aligned address, rsi = number of 4 KiB pages): the VM's page
 * zeroing. Swift's constant-size fills become inline `rep stosl` at -Osize, one TCG helper
 * call per 4 bytes; this aligned 64-byte loop runs as host vector stores.
 */
FUNC zero_pages
    pxor %xmm0, %xmm0
    shlq $12, %rsi
    jz 2f
1:  movaps %xmm0, (%rdi)
    movaps %xmm0, 16(%rdi)
    movaps %xmm0, 32(%rdi)
    movaps %xmm0, 48(%rdi)
    addq $64, %rdi
    subq $64, %rsi
    jnz 1b
2:  ret

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
