/*
 * x86_64 CPU primitives Swift cannot express: port I/O, control registers, TSC, TLB and
 * halting. Each is a leaf function with the System V ABI, declared in Swift with @_extern(c).
 */
    .macro FUNC name
    .section .text.\name, "ax", @progbits
    .globl \name
    .type \name, @function
\name:
    .endm

FUNC x86_out8
    movl %esi, %eax
    movl %edi, %edx
    outb %al, %dx
    ret
FUNC x86_in8
    movl %edi, %edx
    xorl %eax, %eax
    inb %dx, %al
    ret
FUNC x86_out16
    movl %esi, %eax
    movl %edi, %edx
    outw %ax, %dx
    ret
FUNC x86_in16
    movl %edi, %edx
    xorl %eax, %eax
    inw %dx, %ax
    ret
FUNC x86_out32
    movl %esi, %eax
    movl %edi, %edx
    outl %eax, %dx
    ret
FUNC x86_in32
    movl %edi, %edx
    inl %dx, %eax
    ret
FUNC x86_read_cr0
    movq %cr0, %rax
    ret
FUNC x86_read_cr2
    movq %cr2, %rax
    ret
FUNC x86_read_cr3
    movq %cr3, %rax
    ret
FUNC x86_write_cr3
    movq %rdi, %cr3
    ret
FUNC x86_read_cr4
    movq %cr4, %rax
    ret
FUNC x86_invlpg
    invlpg (%rdi)
    ret
FUNC x86_rdtsc
    lfence                      /* keep earlier work from drifting past the read */
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    ret
FUNC x86_rdmsr
    movl %edi, %ecx
    rdmsr
    shlq $32, %rdx
    orq %rdx, %rax
    ret
FUNC x86_wrmsr
    movl %edi, %ecx
    movl %esi, %eax
    movq %rsi, %rdx
    shrq $32, %rdx
    wrmsr
    ret
FUNC x86_halt_forever
    cli
1:  hlt
    jmp 1b
FUNC x86_breakpoint
    int3
    ret
FUNC x86_frame_pointer
    movq %rbp, %rax
    ret
FUNC x86_enable_interrupts
    sti
    ret
FUNC x86_disable_interrupts
    cli
    ret
FUNC x86_take_pending_interrupts
    sti
    nop                 # sti's shadow: interrupts are recognised after this instruction
    cli
    ret
FUNC x86_wait_for_interrupt
    sti
    hlt
    ret
