/*
 * aarch64 CPU primitives Swift cannot express: system registers, barriers, TLB maintenance,
 * semihosting and halting. Each is a leaf with the AAPCS64 convention, declared in Swift
 * with @_extern(c).
 */
    .macro FUNC name
    .section .text.\name, "ax"
    .globl \name
    .type \name, %function
\name:
    .endm

FUNC aarch64_read_cycle_counter
    isb                                  /* keep earlier work from drifting past the read */
    mrs x0, pmccntr_el0
    ret
FUNC aarch64_read_virtual_counter
    isb
    mrs x0, cntvct_el0
    ret
FUNC aarch64_counter_frequency
    mrs x0, cntfrq_el0
    ret
FUNC aarch64_read_ttbr0
    mrs x0, ttbr0_el1
    ret
FUNC aarch64_read_ttbr1
    mrs x0, ttbr1_el1
    ret
FUNC aarch64_read_sctlr
    mrs x0, sctlr_el1
    ret
FUNC aarch64_read_tcr
    mrs x0, tcr_el1
    ret
FUNC aarch64_current_el
    mrs x0, CurrentEL
    lsr x0, x0, #2
    ret
FUNC aarch64_frame_pointer
    mov x0, x29
    ret
FUNC aarch64_breakpoint
    brk #0x4B                            /* the self-test breakpoint: handled and skipped */
    ret
/* long aarch64_semihosting(long op, void *block): A64 semihosting trap (hlt #0xF000). */
FUNC aarch64_semihosting
    hlt #0xF000
    ret
FUNC aarch64_halt_forever
    msr daifset, #0xF
1:  wfi
    b 1b
FUNC aarch64_enable_interrupts
    msr daifclr, #0x2
    ret
FUNC aarch64_disable_interrupts
    msr daifset, #0x2
    ret
FUNC aarch64_take_pending_interrupts
    msr daifclr, #0x2
    isb                 // a pending IRQ is taken here, before the mask returns
    msr daifset, #0x2
    ret
FUNC aarch64_wait_for_interrupt
    wfi
    ret
FUNC aarch64_data_barrier
    dsb sy
    ret
