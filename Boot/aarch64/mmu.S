/*
 * aarch64 MMU primitives for the pmap (Arch/aarch64/MMU.swift) and its self-tests: barriers,
 * TLB maintenance, TTBR0/TCR, instruction-cache synchronisation, accesses the compiler cannot
 * elide or reorder, and two probe pages. Each is a leaf with the AAPCS64 convention, declared
 * in Swift with @_extern(c).
 * All kernel and user mappings use ASID 0 (no ASIDs yet): kernel entries are global, user
 * entries are not, and every TTBR0 switch flushes the whole TLB (see aarch64_switch_ttbr0).
 */
    .macro FUNC name
    .section .text.\name, "ax"
    .globl \name
    .type \name, %function
\name:
    .endm

/* Page-table stores must reach the walker before the next access (Arm ARM D8.2.6). */
FUNC aarch64_publish_tables
    dsb ishst
    isb
    ret

/* x0 = (VA >> 12) | (ASID << 48). Last level only: the leaf changed, the tables did not. */
FUNC aarch64_tlbi_page_last_level
    tlbi vale1is, x0
    ret

/* Every level of the walk for the VA: a table on its path was freed. */
FUNC aarch64_tlbi_page
    tlbi vae1is, x0
    ret

FUNC aarch64_tlbi_all
    tlbi vmalle1is
    ret

/* Non-global entries of ASID 0: every user translation, none of the kernel's. */
FUNC aarch64_tlbi_user
    tlbi aside1is, xzr
    ret

FUNC aarch64_complete_tlbi
    dsb ish
    isb
    ret

/*
 * void aarch64_switch_ttbr0(uint64_t root): loads a new TTBR0 and flushes the TLB. Without
 * ASIDs the flush is total (vmalle1is), which also clears walk caches that may not be tagged
 * by ASID; the kernel's global entries are refetched on demand.
 */
FUNC aarch64_switch_ttbr0
    dsb ishst
    msr ttbr0_el1, x0
    isb
    tlbi vmalle1is
    dsb ish
    isb
    ret

FUNC aarch64_read_id_aa64mmfr1
    mrs x0, id_aa64mmfr1_el1
    ret

FUNC aarch64_write_tcr
    msr tcr_el1, x0
    isb
    ret

/*
 * void aarch64_sync_icache(void *start, size_t length): makes instructions written through
 * the data side visible to instruction fetch (Arm ARM B2.4.4): clean D to PoU, invalidate I.
 */
FUNC aarch64_sync_icache
    add x1, x0, x1                       /* end */
    mrs x3, ctr_el0
    ubfx x4, x3, #16, #4                 /* DminLine: log2(words) */
    mov x5, #4
    lsl x4, x5, x4                       /* D line bytes */
    sub x6, x4, #1
    bic x2, x0, x6
1:  dc cvau, x2
    add x2, x2, x4
    cmp x2, x1
    b.lo 1b
    dsb ish
    and x4, x3, #0xF                     /* IminLine */
    lsl x4, x5, x4
    sub x6, x4, #1
    bic x2, x0, x6
2:  ic ivau, x2
    add x2, x2, x4
    cmp x2, x1
    b.lo 2b
    dsb ish
    isb
    ret

/* uint64_t mmu_load64(const void *address): one 8-byte load, a real instruction. */
FUNC mmu_load64
    ldr x0, [x0]
    ret

/* void mmu_store64(void *address, uint64_t value): one 8-byte store. */
FUNC mmu_store64
    str x1, [x0]
    ret

/* void mmu_call(void *address): calls code at `address` (which must return). */
FUNC mmu_call
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    blr x0
    ldp x29, x30, [sp], #16
    ret

/*
 * Probe pages for the W^X self-tests: one page of text that never runs (brk filler) and one
 * page of read-only data, each alone on its page so a test can remap it without touching code
 * or constants anything else uses.
 */
    .section .text.pmap_probe_text, "ax"
    .p2align 12
pmap_probe_text_page:
    .fill 1024, 4, 0xD4200000

    .section .rodata.pmap_probe_rodata, "a"
    .p2align 12
pmap_probe_rodata_page:
    .rept 512
    .quad 0x0BAD0DA7A0BAD0DA
    .endr

FUNC pmap_probe_text_page_address
    ldr x0, =pmap_probe_text_page
    ret
FUNC pmap_probe_rodata_page_address
    ldr x0, =pmap_probe_rodata_page
    ret
