/*
 * aarch64 entry, laid out as a Linux arm64 Image so QEMU (virt, raspi3b) and the Pi firmware
 * load it at RAM base + 0x80000 and pass the DTB's physical address in x0.
 *
 * Invariants established before Swift runs:
 *  - secondary cores (MPIDR Aff0 != 0) are parked in wfe forever;
 *  - running at EL1h (an EL2 entry drops to EL1 with the timer, FP/SIMD and PMU untrapped);
 *  - FP/SIMD enabled (CPACR_EL1.FPEN = 0b11), the cycle counter (PMCCNTR_EL0) running;
 *  - MMU on, 4 KiB granule, 48-bit VAs, all kernel mappings in TTBR0's lower half: the
 *    identity map (L0 slot 0, needed while the MMU turns on), the direct map at
 *    0x0000_4000_0000_0000 (slot 128; virt: 1 GiB blocks, the first GiB as device memory,
 *    the next seven as normal write-back memory; raspi3b: 2 MiB blocks, normal RAM below the
 *    peripherals at 0x3F00_0000, device from there to 2 GiB) and the kernel window at 0x0000_7FFF_8000_0000
 *    (slot 255; KERNEL_VMA + offset -> load base + offset, 2 MiB blocks). TTBR1 walks are
 *    disabled (EPD1): Swift keeps discriminator bits in the top nibble of String and object
 *    pointers, so no pointer Swift code holds may live in the 0xFFFF... half, and a branch
 *    there would strip any tag (BranchAddr sign-extends bit 55), so TBI cannot help either;
 *  - .bss zeroed; sp at the top of the boot stack; VBAR_EL1 at the vector table;
 *  - kernel_entry(dtb_phys, load_base_phys) called. It never returns.
 * Until the MMU is on, every address comes from adr/adrp (PC-relative), because the image is
 * linked at its high virtual address but runs at its physical one.
 */
#define PTE_VALID        (1 << 0)
#define PTE_TABLE        (1 << 1)
#define PTE_AF           (1 << 10)
#define PTE_SH_INNER     (3 << 8)
#define PTE_ATTR(n)      ((n) << 2)
#define PTE_PXN          (1 << 53)
#define PTE_UXN          (1 << 54)
#define BLOCK_DEVICE     (PTE_VALID | PTE_AF | PTE_ATTR(0) | PTE_PXN | PTE_UXN)
#define BLOCK_NORMAL     (PTE_VALID | PTE_AF | PTE_ATTR(1) | PTE_SH_INNER | PTE_UXN)
/* MAIR: attr0 device-nGnRE, attr1 normal write-back RW-allocate, attr2 normal non-cacheable. */
#define MAIR_VALUE       0x000000000044FF04
/* TCR: T0SZ=T1SZ=16, 4K granules (TG0=0, TG1=2), inner-shareable write-back walks. IPS set at run time. */
#define TCR_VALUE        ((16 << 0) | (1 << 8) | (1 << 10) | (3 << 12) | \
                          (16 << 16) | (1 << 23) | (1 << 24) | (1 << 26) | (3 << 28) | (2 << 30))

    .section .text.head, "ax"
    .globl _start
_start:
    b primary_entry                      /* code0 */
    .long 0                              /* code1 */
    .quad 0x80000                        /* text_offset */
    .quad __image_size                   /* image_size */
    .quad 0x2                            /* flags: little endian, 4 KiB pages */
    .quad 0, 0, 0                        /* reserved */
    .ascii "ARM\x64"                     /* magic */
    .long 0                              /* reserved (PE header offset) */

primary_entry:
    mov x19, x0                          /* DTB physical address */
    mrs x1, mpidr_el1
    and x1, x1, #0xFF
    cbz x1, 1f
park:
    wfe
    b park
1:
    mrs x1, CurrentEL
    lsr x1, x1, #2
    cmp x1, #2
    b.ne at_el1

    /* EL2 -> EL1: AArch64 at EL1, no traps of timers, FP/SIMD or the PMU. */
    mov x1, #(1 << 31)                   /* HCR_EL2.RW */
    msr hcr_el2, x1
    mov x1, #3                           /* CNTHCTL_EL2.EL1PCTEN | EL1PCEN */
    msr cnthctl_el2, x1
    msr cntvoff_el2, xzr
    mov x1, #0x33FF                      /* CPTR_EL2: RES1 bits, TFP clear */
    msr cptr_el2, x1
    mrs x1, pmcr_el0
    ubfx x1, x1, #11, #5                 /* MDCR_EL2.HPMN = PMCR_EL0.N: all counters to EL1 */
    msr mdcr_el2, x1
    msr vttbr_el2, xzr
    ldr x1, =0x30D00800                  /* SCTLR_EL1 RES1 bits, MMU off */
    msr sctlr_el1, x1
    mov x1, #0x3C5                       /* SPSR: EL1h, DAIF masked */
    msr spsr_el2, x1
    adr x1, at_el1
    msr elr_el2, x1
    eret

at_el1:
    mov x1, #(3 << 20)                   /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr cpacr_el1, x1
    isb
    mrs x1, pmcr_el0                     /* start the cycle counter */
    orr x1, x1, #(1 << 0)
    orr x1, x1, #(1 << 2)
    msr pmcr_el0, x1
    mov x1, #(1 << 31)
    msr pmcntenset_el0, x1

    /* Physical load base of the image window: the image sits 0x80000 above it. */
    adr x20, _start
    sub x21, x20, #0x80000               /* x21 = window base (2 MiB aligned) */

    /* Zero the boot page tables. */
    adrp x0, boot_page_tables
    add x0, x0, :lo12:boot_page_tables
    mov x1, #(6 * 4096)
2:  stp xzr, xzr, [x0], #16
    subs x1, x1, #16
    b.ne 2b

    adrp x2, boot_l0_low
    add x2, x2, :lo12:boot_l0_low
    adrp x3, boot_l0_high
    add x3, x3, :lo12:boot_l0_high
    adrp x4, boot_l1_map
    add x4, x4, :lo12:boot_l1_map
    adrp x5, boot_l1_kernel
    add x5, x5, :lo12:boot_l1_kernel
    adrp x6, boot_l2_kernel
    add x6, x6, :lo12:boot_l2_kernel

    /* L1 shared by the identity map (slot 0) and the direct map (slot 128). */
#ifdef BOARD_RASPI3B
    /*
     * Raspberry Pi 3B: RAM from 0 up to the peripherals at 0x3F00_0000 (the GPU's share of it
     * included: the ARM never touches that part), so the first GiB is an L2 table of 2 MiB
     * blocks, normal below PERIPHERAL_BASE and device from it. The second GiB starts with the
     * ARM local peripherals (0x4000_0000): device. Nothing above: the SoC decodes no more, and
     * a normal mapping there would invite speculative fetches.
     */
    adrp x10, boot_l2_low
    add x10, x10, :lo12:boot_l2_low
    orr x7, x10, #(PTE_VALID | PTE_TABLE)
    str x7, [x4]                         /* L1[0] -> 2 MiB blocks */
    ldr x7, =BLOCK_NORMAL
    ldr x11, =BLOCK_DEVICE
    mov x8, #0
3:  cmp x8, #(0x3F000000 >> 21)
    csel x12, x7, x11, lo
    lsl x9, x8, #21
    orr x9, x9, x12
    str x9, [x10, x8, lsl #3]
    add x8, x8, #1
    cmp x8, #512
    b.ne 3b
    ldr x7, =BLOCK_DEVICE
    mov x9, #(1 << 30)
    orr x9, x9, x7
    str x9, [x4, #8]                     /* L1[1]: 1..2 GiB, ARM local peripherals */
#else
    ldr x7, =BLOCK_DEVICE
    str x7, [x4]                         /* 0..1 GiB: devices (virt's MMIO) */
    ldr x7, =BLOCK_NORMAL
    mov x8, #1
3:  lsl x9, x8, #30
    orr x9, x9, x7
    str x9, [x4, x8, lsl #3]
    add x8, x8, #1
    cmp x8, #8
    b.ne 3b
#endif

    orr x7, x4, #(PTE_VALID | PTE_TABLE)
    str x7, [x2]                         /* L0[0]: identity */
    str x7, [x2, #(128 * 8)]             /* L0[128]: 0x0000_4000_0000_0000 direct map */
    orr x7, x5, #(PTE_VALID | PTE_TABLE)
    str x7, [x2, #(255 * 8)]             /* L0[255] */
    orr x7, x6, #(PTE_VALID | PTE_TABLE)
    str x7, [x5, #(510 * 8)]             /* L1[510]: 0x0000_7FFF_8000_0000 kernel window */

    /* Kernel window: 512 x 2 MiB normal blocks from the window base. */
    ldr x7, =BLOCK_NORMAL
    mov x8, #0
4:  lsl x9, x8, #21
    add x9, x9, x21
    orr x9, x9, x7
    str x9, [x6, x8, lsl #3]
    add x8, x8, #1
#ifdef BOARD_RASPI3B
    cmp x8, #(0x3F000000 >> 21)          /* window base 0: stop short of the peripherals */
#else
    cmp x8, #512
#endif
    b.ne 4b

    ldr x1, =MAIR_VALUE
    msr mair_el1, x1
    ldr x1, =TCR_VALUE
    mrs x7, id_aa64mmfr0_el1
    and x7, x7, #7                       /* PARange -> TCR.IPS */
    bfi x1, x7, #32, #3
    msr tcr_el1, x1
    msr ttbr0_el1, x2
    msr ttbr1_el1, x3
    dsb ish
    isb
    tlbi vmalle1
    dsb ish
    isb
    mrs x1, sctlr_el1
    orr x1, x1, #(1 << 0)                /* M */
    orr x1, x1, #(1 << 2)                /* C */
    orr x1, x1, #(1 << 12)               /* I */
    bic x1, x1, #(1 << 1)                /* A: Swift code makes unaligned accesses */
    bic x1, x1, #(1 << 19)               /* WXN */
    msr sctlr_el1, x1
    isb
    ldr x1, =high_entry
    br x1

    .section .text.boot_high, "ax"
high_entry:
    ldr x1, =kernel_stack_top
    mov sp, x1
    mov x29, xzr
    mov x30, xzr
    ldr x1, =exception_vectors
    msr vbar_el1, x1
    isb
    ldr x1, =__bss_start
    ldr x2, =__bss_end
5:  cmp x1, x2
    b.hs 6f
    str xzr, [x1], #8
    b 5b
6:  mov x0, x19
    mov x1, x21
    bl kernel_entry
7:  wfi
    b 7b

    .section .boot.pagetables, "aw", %nobits
    .p2align 12
    .globl boot_page_tables
boot_page_tables:
boot_l0_low:    .skip 4096
boot_l0_high:   .skip 4096              /* TTBR1: empty, walks disabled by EPD1 */
boot_l1_map:    .skip 4096
boot_l1_kernel: .skip 4096
boot_l2_kernel: .skip 4096
boot_l2_low:    .skip 4096              /* raspi3b: the first GiB in 2 MiB blocks */

    /* The 64 KiB boot stack starts on a 128 KiB boundary: every address in it has bit 16
     * clear and the guard page below it has bit 16 set, which is how the exception vectors
     * tell an overflow from a fault with one tbnz (Boot/aarch64/vectors.S). The padding
     * below holds the overflow stack. */
    .section .kernel_stack, "aw", %nobits
    .p2align 17
    .globl overflow_stack_bottom
overflow_stack_bottom: .skip 16 * 1024
    .globl overflow_stack_top
overflow_stack_top:    .skip 128 * 1024 - 16 * 1024 - 4096
    .globl kernel_stack_guard
kernel_stack_guard:  .skip 4096          /* unmapped by the pmap later: overflow faults */
    .globl kernel_stack_bottom
kernel_stack_bottom: .skip 64 * 1024
    .globl kernel_stack_top
kernel_stack_top:
