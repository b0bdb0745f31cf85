// PageFault: the one machine-independent entry point for MMU faults.
// Each architecture's trap code decodes its fault report (x86 #PF error code and CR2;
// aarch64 ESR data/instruction abort and FAR) into a `PageFault` and calls
// `PageFaultDispatcher.handle`. Until vm_fault exists, a handler is installed by whoever
// wants faults (the pmap self-tests); a fault nobody handles panics in the arch code with the
// decoded fault printed.
// Invariants: a handler that returns `.resolved` has made the access legal (mapped the page
// or granted the permission), so the faulting instruction is simply restarted.

/// What kind of access faulted.
public enum FaultAccess: Equatable {
    case read, write, execute
}

/// Why the MMU refused the access.
public enum FaultReason: Equatable {
    /// No valid translation at some level.
    case notPresent
    /// A translation exists but forbids this access (write to read-only, execute of NX).
    case protection
    /// The translation exists but its accessed flag is clear (aarch64 without hardware AF).
    case accessFlag
}

/// A decoded page fault.
public struct PageFault: Equatable {
    public var address: UInt64
    public var access: FaultAccess
    public var reason: FaultReason
    public var fromUser: Bool

    public init(address: UInt64, access: FaultAccess, reason: FaultReason, fromUser: Bool) {
        self.address = address
        self.access = access
        self.reason = reason
        self.fromUser = fromUser
    }
}

/// Whether a fault handler dealt with the fault.
public enum FaultResolution: Equatable {
    case resolved
    case unhandled
}

/// Routes decoded faults to the installed handler.
public enum PageFaultDispatcher {
    /// The current handler; nil means every fault is unhandled.
    public nonisolated(unsafe) static var handler: ((PageFault) -> FaultResolution)?
    /// Faults seen, handled or not (for tests and statistics).
    public nonisolated(unsafe) static var faultCount = 0

    /// Hands `fault` to the handler.
    public static func handle(_ fault: PageFault) -> FaultResolution {
        faultCount += 1
        guard let handler else { return .unhandled }
        return handler(fault)
    }
}
