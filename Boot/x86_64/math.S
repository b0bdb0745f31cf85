/*
 * double ceil(double): the one libm function the Embedded Swift stdlib calls on x86_64
 * (hash-table sizing). SSE2 only, so it does not depend on SSE4.1's roundsd.
 * |x| >= 2^52 (already integral), NaN and infinities are returned unchanged; a result of zero
 * keeps the sign of x (ceil(-0.5) == -0.0), as C requires.
 */
    .section .text.ceil, "ax", @progbits
    .globl ceil
    .type ceil, @function
ceil:
    movsd %xmm0, %xmm2
    andpd abs_mask(%rip), %xmm2
    ucomisd two_pow_52(%rip), %xmm2
    jae 1f                               /* |x| >= 2^52 or infinite (NaN sets CF: not taken) */
    jp 1f                                /* NaN */
    cvttsd2si %xmm0, %rax                /* truncate toward zero */
    cvtsi2sd %rax, %xmm1
    ucomisd %xmm1, %xmm0
    jbe 2f                               /* x <= trunc(x): trunc is the ceiling */
    addsd one(%rip), %xmm1
2:  movsd %xmm0, %xmm2
    andpd sign_mask(%rip), %xmm2
    orpd %xmm2, %xmm1                    /* zero results take x's sign; others already have it */
    movsd %xmm1, %xmm0
1:  ret

    .section .rodata.ceil, "a", @progbits
    .p2align 4
abs_mask:   .quad 0x7FFFFFFFFFFFFFFF, 0
sign_mask:  .quad 0x8000000000000000, 0
two_pow_52: .quad 0x4330000000000000
one:        .quad 0x3FF0000000000000
