// VideoCoreMailbox (Raspberry Pi): asks the VideoCore firmware through mailbox 0's property
// channel (8), the way Linux's bcm2835-mailbox and raspberrypi-firmware drivers do.
// Used at boot when no device tree came in x0: the ARM's memory size is the firmware's
// answer to GET_ARM_MEMORY, never a constant.
// Invariants: one request at a time, on the boot CPU, in the 16-byte-aligned buffer of
// Boot/aarch64/firmware.S. The buffer is cleaned to the point of coherency before the
// doorbell and invalidated before the answer is read, because the VideoCore reads and writes
// RAM behind the ARM's caches. Registers are reached through the direct map's device window.

import _Volatile

@_extern(c, "firmware_mailbox_buffer_address") private func firmwareMailboxBufferAddress() -> UInt
@_extern(c, "aarch64_clean_invalidate_dcache") func cleanInvalidateDataCache(_ start: UInt, _ length: Int)

enum VideoCoreMailbox {
    /// Mailbox 0's registers (BCM2835 ARM peripherals, section "Mailboxes"; bus 0x7E00B880).
    private static let physicalBase: UInt64 = 0x3F00_B880
    private static let readRegister: UInt = 0x00
    private static let readStatusRegister: UInt = 0x18     // mailbox 0 (VideoCore -> ARM)
    private static let writeRegister: UInt = 0x20          // mailbox 1 (ARM -> VideoCore)
    private static let writeStatusRegister: UInt = 0x38
    private static let full: UInt32 = 1 << 31
    private static let empty: UInt32 = 1 << 30
    private static let propertyChannel: UInt32 = 8
    private static let bufferWords = 64
    /// Status polls before giving up; the firmware answers in microseconds.
    private static let pollBudget = 10_000_000

    /// The ARM's RAM as the firmware reports it (GET_ARM_MEMORY).
    static func armMemory() throws(FirmwarePropertyError) -> PhysicalRange {
        let value = try request(FirmwareProperty.getARMMemory, valueWords: 2)
        return FirmwareProperty.armMemory(fromValue: value)
    }

    /// Sends a one-tag property request and returns the answer's value buffer (valid until
    /// the next request).
    private static func request(_ tag: UInt32, valueWords: Int) throws(FirmwarePropertyError) -> UnsafePointer<UInt32> {
        let address = firmwareMailboxBufferAddress()
        let buffer = UnsafeMutablePointer<UInt32>(bitPattern: address)!
        let words = try FirmwareProperty.encodeRequest(tag: tag, valueWords: valueWords, into: buffer,
                                                        capacity: bufferWords)
        cleanInvalidateDataCache(address, words * 4)
        // The VideoCore sees ARM physical memory at the same addresses below 1 GiB.
        let physical = UInt32(truncatingIfNeeded: Platform.kernelImagePhysicalAddress(of: address).value)
        let message = physical | propertyChannel
        let base = Platform.directMapBase &+ UInt(physicalBase)
        let writeStatus = VolatileMappedRegister<UInt32>(unsafeBitPattern: base + writeStatusRegister)
        let readStatus = VolatileMappedRegister<UInt32>(unsafeBitPattern: base + readStatusRegister)
        var polls = 0
        while writeStatus.load() & full != 0 {
            polls += 1
            guard polls < pollBudget else { throw .timeout }
        }
        VolatileMappedRegister<UInt32>(unsafeBitPattern: base + writeRegister).store(message)
        while true {
            while readStatus.load() & empty != 0 {
                polls += 1
                guard polls < pollBudget else { throw .timeout }
            }
            // Answers on other channels are not ours: drop them.
            if VolatileMappedRegister<UInt32>(unsafeBitPattern: base + readRegister).load() == message { break }
        }
        cleanInvalidateDataCache(address, words * 4)
        return try FirmwareProperty.decodeResponse(UnsafePointer(buffer), valueWords: valueWords)
    }
}
