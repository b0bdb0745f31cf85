// Layout: where the linker put the kernel image, as the boot assembly exports it.
// Invariants: all addresses are fixed at link time; physical bounds are page-aligned and
// cover text, data, bss and the boot stack, so the page allocator never hands them out.

@_extern(c, "kernel_image_virtual_start") func kernelImageVirtualStart() -> UInt
@_extern(c, "kernel_image_virtual_end") func kernelImageVirtualEnd() -> UInt
@_extern(c, "kernel_bss_start") func kernelBSSStart() -> UInt
@_extern(c, "kernel_bss_end") func kernelBSSEnd() -> UInt
@_extern(c, "kernel_stack_bottom_address") func kernelStackBottom() -> UInt
@_extern(c, "kernel_stack_top_address") func kernelStackTop() -> UInt
@_extern(c, "kernel_text_start") func kernelTextStart() -> UInt
@_extern(c, "kernel_text_end") func kernelTextEnd() -> UInt

/// The kernel image's physical extent, for reserving it in the memory map.
var kernelImagePhysicalRange: PhysicalRange {
    PhysicalRange(start: Platform.kernelImagePhysicalAddress(of: kernelImageVirtualStart()),
                  end: Platform.kernelImagePhysicalAddress(of: kernelImageVirtualEnd()))
}

@_extern(c, "kernel_rodata_start") func kernelReadOnlyDataStart() -> UInt
@_extern(c, "kernel_data_start") func kernelDataStart() -> UInt
@_extern(c, "kernel_stack_guard_address") func kernelStackGuard() -> UInt
