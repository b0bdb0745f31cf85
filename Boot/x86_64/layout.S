/* Link-time layout exported to Swift (Kernel/Core/Layout.swift): one leaf function each. */
    .macro EXPORT name, symbol
    .section .text.\name, "ax", @progbits
    .globl \name
\name:
    movabsq $\symbol, %rax
    ret
    .endm
    EXPORT kernel_image_virtual_start, __kernel_virtual_start
    EXPORT kernel_image_virtual_end, __kernel_end
    EXPORT kernel_bss_start, __bss_start
    EXPORT kernel_bss_end, __bss_end
    EXPORT kernel_stack_bottom_address, kernel_stack_bottom
    EXPORT kernel_stack_top_address, kernel_stack_top
    EXPORT kernel_text_start, __text_start
    EXPORT kernel_text_end, __text_end
    EXPORT kernel_rodata_start, __rodata_start
    EXPORT kernel_data_start, __data_start
    EXPORT kernel_stack_guard_address, kernel_stack_guard
