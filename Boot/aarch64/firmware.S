/*
 * Firmware-facing helpers (Raspberry Pi; assembled on every aarch64 board, used only there):
 * the mailbox message buffer, which the VideoCore reads and writes by physical address behind
 * the ARM's caches, and data-cache maintenance by address for it and for DMA-like sharing.
 * Each function is a leaf with the AAPCS64 convention, declared in Swift with @_extern(c).
 */
    .macro FUNC name
    .section .text.\name, "ax"
    .globl \name
    .type \name, %function
\name:
    .endm

/* Property messages need a 16-byte-aligned buffer (the low 4 bits carry the channel). */
    .section .bss.firmware_mailbox_buffer, "aw", %nobits
    .p2align 6
firmware_mailbox_buffer:
    .skip 256

FUNC firmware_mailbox_buffer_address
    ldr x0, =firmware_mailbox_buffer
    ret

/*
 * void aarch64_clean_invalidate_dcache(void *start, size_t length): cleans and invalidates
 * the data cache to the point of coherency over [start, start + length), so another bus
 * master sees what the CPU wrote and the CPU then sees what the other master wrote.
 */
FUNC aarch64_clean_invalidate_dcache
    add x1, x0, x1
    mrs x3, ctr_el0
    ubfx x3, x3, #16, #4                 /* DminLine: log2(words) */
    mov x4, #4
    lsl x3, x4, x3
    sub x4, x3, #1
    bic x0, x0, x4
1:  dc civac, x0
    add x0, x0, x3
    cmp x0, x1
    b.lo 1b
    dsb sy
    ret
