/*
 * x86_64 MMU primitives for the pmap (Arch/x86_64/MMU.swift) and its self-tests: CR4, global
 * TLB flush, accesses the compiler cannot elide or reorder, and two probe pages.
 * Each is a leaf with the System V ABI, declared in Swift with @_extern(c). invlpg and the
 * CR3 accessors are in cpu.S.
 */
    .macro FUNC name
    .section .text.\name, "ax", @progbits
    .globl \name
    .type \name, @function
\name:
    .endm

#define CR4_PGE (1 << 7)

FUNC x86_write_cr4
    movq %rdi, %cr4
    ret

/* Flushes every TLB entry, global ones included (SDM 4.10.4.1: toggling CR4.PGE). */
FUNC x86_flush_tlb_global
    movq %cr4, %rax
    testq $CR4_PGE, %rax
    jz 1f
    movq %rax, %rdx
    andq $~CR4_PGE, %rdx
    movq %rdx, %cr4
    movq %rax, %cr4
    ret
1:  movq %cr3, %rax                      /* no global pages yet: a CR3 reload flushes all */
    movq %rax, %cr3
    ret

/* uint64_t mmu_load64(const void *address): one 8-byte load, a real instruction. */
FUNC mmu_load64
    movq (%rdi), %rax
    ret

/* void mmu_store64(void *address, uint64_t value): one 8-byte store. */
FUNC mmu_store64
    movq %rsi, (%rdi)
    ret

/* void mmu_call(void *address): calls code at `address` (which must return). */
FUNC mmu_call
    pushq %rbp
    movq %rsp, %rbp
    call *%rdi
    popq %rbp
    ret

/*
 * Probe pages for the W^X self-tests: one page of text that never runs (int3 filler) and one
 * page of read-only data, each alone on its page so a test can remap it without touching code
 * or constants anything else uses.
 */
    .section .text.pmap_probe_text, "ax", @progbits
    .p2align 12
pmap_probe_text_page:
    .fill 4096, 1, 0xCC

    .section .rodata.pmap_probe_rodata, "a", @progbits
    .p2align 12
pmap_probe_rodata_page:
    .rept 512
    .quad 0x0BAD0DA7A0BAD0DA
    .endr

FUNC pmap_probe_text_page_address
    movabsq $pmap_probe_text_page, %rax
    ret
FUNC pmap_probe_rodata_page_address
    movabsq $pmap_probe_rodata_page, %rax
    ret
