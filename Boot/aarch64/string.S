/*
 * memcpy, memmove, memset, memcmp for the Swift runtime and the compiler's own calls.
 * Written in assembly so the compiler cannot turn a copy loop back into a call to itself.
 * Byte loops with a 16-byte fast path; correctness first, the page copies of the VM use
 * whole aligned pages and hit the fast path.
 */
    .macro FUNC name
    .section .text.\name, "ax"
    .globl \name
    .type \name, %function
\name:
    .endm

FUNC memcpy
    mov x3, x0
1:  cmp x2, #16
    b.lo 2f
    ldp x4, x5, [x1], #16
    stp x4, x5, [x3], #16
    sub x2, x2, #16
    b 1b
2:  cbz x2, 3f
    ldrb w4, [x1], #1
    strb w4, [x3], #1
    sub x2, x2, #1
    b 2b
3:  ret

FUNC memmove
    cmp x0, x1
    b.ls memcpy                          /* dst at or below src: forward copy is safe */
    add x3, x1, x2
    cmp x0, x3
    b.hs memcpy                          /* no overlap */
    add x3, x0, x2                       /* overlap, dst above src: copy backwards */
    add x1, x1, x2
1:  cbz x2, 2f
    ldrb w4, [x1, #-1]!
    strb w4, [x3, #-1]!
    sub x2, x2, #1
    b 1b
2:  ret

FUNC memset
    mov x3, x0
    and w1, w1, #0xFF
    orr w1, w1, w1, lsl #8
    orr w1, w1, w1, lsl #16
    orr x1, x1, x1, lsl #32
1:  cmp x2, #16
    b.lo 2f
    stp x1, x1, [x3], #16
    sub x2, x2, #16
    b 1b
2:  cbz x2, 3f
    strb w1, [x3], #1
    sub x2, x2, #1
    b 2b
3:  ret

/*
 * zero_pages(x0 = page-aligned address, x1 = number of 4 KiB pages): the VM's page zeroing,
 * 64 bytes per iteration (memset's 16-byte loop is four times the branches under TCG).
 */
FUNC zero_pages
    lsl x1, x1, #12
    cbz x1, 2f
1:  stp xzr, xzr, [x0]
    stp xzr, xzr, [x0, #16]
    stp xzr, xzr, [x0, #32]
    stp xzr, xzr, [x0, #48]
    add x0, x0, #64
    subs x1, x1, #64
    b.ne 1b
2:  ret

FUNC memcmp
1:  cbz x2, 2f
    ldrb w3, [x0], #1
    ldrb w4, [x1], #1
    subs w3, w3, w4
    b.ne 3f
    sub x2, x2, #1
    b 1b
2:  mov w0, #0
    ret
3:  mov w0, w3
    ret
