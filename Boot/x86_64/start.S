/*
 * x86_64 entry: QEMU's -kernel loads this ELF through its PVH note and enters `pvh_start`
 * in 32-bit protected mode, paging off, %ebx = physical address of struct hvm_start_info.
 *
 * Invariants established before Swift runs:
 *  - long mode, paging on with boot page tables (2 MiB pages) mapping physical 0..4 GiB at
 *    three places: identity (only needed for the mode switch), the direct map at
 *    0x0000_4000_0000_0000 (PML4 slot 128), and the kernel image window at KERNEL_VMA,
 *    the last 2 GiB of the lower half (PML4 slot 255). The kernel owns lower-half slots
 *    128..255 and user space 0..127: Swift keeps discriminator bits in the top nibble of
 *    String and object pointers, so no pointer Swift code holds may have its top bits set,
 *    which rules out the canonical upper half;
 *  - SSE enabled (CR0.EM=0, CR0.MP=1, CR4.OSFXSR, CR4.OSXMMEXCPT), EFER.NXE on;
 *  - .bss zeroed, %rsp at the top of the boot stack, whose lowest page is a guard that
 *    the pmap unmaps later;
 *  - kernel_entry(start_info_phys) called with the System V ABI. It never returns.
 *
 * The boot page tables live in .boot.pagetables, which the linker script keeps apart from
 * .bss so zeroing .bss cannot destroy the tables the CPU is using.
 */
#define KERNEL_VMA        0x00007FFF80000000
#define PTE_P   0x001
#define PTE_W   0x002
#define PTE_PS  0x080

    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                      /* name size: "Xen\0" */
    .long 4                      /* descriptor size */
    .long 18                     /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .boot.text, "ax", @progbits
    .code32
    .globl pvh_start
pvh_start:
    cli
    cld
    movl %ebx, %edi                      /* keep start_info phys for kernel_entry */
    movl $boot_stack_top_phys, %esp

    /* Zero the boot page tables: PML4, two PDPTs, four PDs. */
    movl $boot_pml4, %eax
    movl %eax, %edx
    movl $(7 * 4096 / 4), %ecx
    push %edi
    movl %edx, %edi
    xorl %eax, %eax
    rep stosl
    pop %edi

    /* Four page directories map 0..4 GiB with 2 MiB pages. */
    movl $boot_pd, %ebx
    xorl %ecx, %ecx                      /* entry index 0..2047 */
1:  movl %ecx, %eax
    shll $21, %eax                       /* low 32 bits of index * 2 MiB */
    orl $(PTE_P | PTE_W | PTE_PS), %eax
    movl %eax, (%ebx, %ecx, 8)
    movl %ecx, %eax
    shrl $11, %eax                       /* high bits: index * 2 MiB >> 32 */
    movl %eax, 4(%ebx, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jne 1b

    /* PDPT shared by the identity map (PML4[0]) and the direct map (PML4[128]). */
    movl $boot_pdpt_low, %ebx
    movl $boot_pd, %eax
    orl $(PTE_P | PTE_W), %eax
    movl %eax, 0(%ebx)
    addl $4096, %eax
    movl %eax, 8(%ebx)
    addl $4096, %eax
    movl %eax, 16(%ebx)
    addl $4096, %eax
    movl %eax, 24(%ebx)

    /* Kernel window: PML4[255] -> PDPT[510] = first GiB, PDPT[511] = second GiB. */
    movl $boot_pdpt_kernel, %ebx
    movl $boot_pd, %eax
    orl $(PTE_P | PTE_W), %eax
    movl %eax, (510 * 8)(%ebx)
    addl $4096, %eax
    movl %eax, (511 * 8)(%ebx)

    movl $boot_pml4, %ebx
    movl $boot_pdpt_low, %eax
    orl $(PTE_P | PTE_W), %eax
    movl %eax, 0(%ebx)
    movl %eax, (128 * 8)(%ebx)
    movl $boot_pdpt_kernel, %eax
    orl $(PTE_P | PTE_W), %eax
    movl %eax, (255 * 8)(%ebx)

    /* CR4: PAE | OSFXSR | OSXMMEXCPT (SSE for Swift code). */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3

    /* EFER: LME | NXE. */
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr

    /* CR0: PG | WP | MP, clear EM and TS. */
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | (1 << 1)), %eax
    andl $~((1 << 2) | (1 << 3)), %eax
    movl %eax, %cr0

    lgdt boot_gdt_descriptor
    ljmp $0x08, $long_mode_low

    .code64
long_mode_low:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $long_mode_high, %rax
    jmp *%rax

    .section .boot.data, "aw", @progbits
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF             /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF             /* 0x10: data */
boot_gdt_end:
boot_gdt_descriptor:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .boot.pagetables, "aw", @nobits
    .p2align 12
    .globl boot_pml4
boot_pml4:        .skip 4096
boot_pdpt_low:    .skip 4096
boot_pdpt_kernel: .skip 4096
boot_pd:          .skip 4 * 4096
    .p2align 12
boot_stack32:     .skip 256
boot_stack_top_phys:

    .section .text.boot_high, "ax", @progbits
    .code64
long_mode_high:
    /* The GDT must be reachable after the identity map goes: reload it from the high alias,
     * with a TSS whose IST 1 is the double-fault stack. The TSS descriptor's base is split
     * across bit fields, so it is assembled here rather than by the linker. */
    movabsq $high_tss, %rax
    movabsq $high_gdt_tss, %rdx
    movw $(high_tss_end - high_tss - 1), (%rdx)      /* limit 15:0 */
    movw %ax, 2(%rdx)                    /* base 15:0 */
    shrq $16, %rax
    movb %al, 4(%rdx)                    /* base 23:16 */
    movb $0x89, 5(%rdx)                  /* present, DPL 0, available 64-bit TSS */
    movb $0, 6(%rdx)
    movb %ah, 7(%rdx)                    /* base 31:24 */
    shrq $16, %rax
    movl %eax, 8(%rdx)                   /* base 63:32 */
    movl $0, 12(%rdx)
    movabsq $double_fault_stack_top, %rax
    movabsq $high_tss, %rdx
    movq %rax, 36(%rdx)                  /* IST1 */
    movw $(high_tss_end - high_tss), 102(%rdx)   /* I/O map base: none */
    movabsq $high_gdt_descriptor, %rax
    lgdt (%rax)
    movw $0x18, %ax
    ltr %ax
    movabsq $kernel_stack_top, %rsp
    xorl %ebp, %ebp                      /* a null frame pointer ends backtraces */

    /* Zero .bss (rep stosb: the loader's zero fill is not a contract we rely on). */
    pushq %rdi
    movabsq $__bss_start, %rdi
    movabsq $__bss_end, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb
    popq %rdi

    call kernel_entry
1:  cli
    hlt
    jmp 1b

    /* In .data, not .rodata: ltr marks the TSS descriptor busy, a write to the GDT. */
    .section .data.boot_gdt, "aw", @progbits
    .p2align 3
high_gdt:                                /* accessed bits preset: the CPU need not write them */
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
high_gdt_tss:                            /* 0x18: 16-byte TSS descriptor, filled at boot */
    .quad 0, 0
high_gdt_end:
high_gdt_descriptor:
    .word high_gdt_end - high_gdt - 1
    .quad high_gdt

    .section .data.boot_tss, "aw", @progbits
    .p2align 4
high_tss:                                /* 64-bit TSS: only IST1 is used */
    .skip 104
high_tss_end:

    .section .kernel_stack, "aw", @nobits
    .p2align 12
double_fault_stack:  .skip 16 * 1024     /* IST1: #DF, e.g. the kernel stack ran into its guard */
double_fault_stack_top:
    .globl kernel_stack_guard
kernel_stack_guard:  .skip 4096          /* unmapped by the pmap later: overflow faults */
    .globl kernel_stack_bottom
kernel_stack_bottom: .skip 64 * 1024
    .globl kernel_stack_top
kernel_stack_top:
