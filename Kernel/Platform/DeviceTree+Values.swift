// DeviceTree+Values: typed views of property values and of names inside a devicetree blob.
// Invariants: a value never copies: it points into the blob, so it lives as long as the blob;
// every property accessor checks its index against the value's length and returns nil when the
// value is too short; strings end at their NUL, which is never part of the view.
// Locks: none.

// MARK: - Properties

/// One property of a node: a name and a value of raw big-endian bytes inside the blob.
public struct DeviceTreeProperty {
    /// The property name.
    public let name: DeviceTreeString
    /// The value bytes (no copy: they point into the blob).
    public let value: UnsafeRawBufferPointer
    /// Blob offset of the property's FDT_PROP token (for error reports).
    public let offset: Int

    /// True for a property with an empty value (a flag such as `ranges;`).
    public var isEmpty: Bool { value.isEmpty }

    /// Number of whole 32-bit cells in the value.
    public var cellCount: Int { value.count / 4 }

    /// The cell (big-endian u32) at `index`, or nil when the value is too short.
    public func u32(at index: Int) -> UInt32? {
        guard index >= 0, index < cellCount else { return nil }
        return DeviceTree.word(value, index * 4)
    }

    /// The two cells at `index` and `index + 1` as one u64 (high cell first), or nil.
    public func u64(at index: Int) -> UInt64? { number(at: index, cells: 2) }

    /// The number encoded in `cells` cells (0, 1 or 2) starting at cell `index`: how `reg`,
    /// `ranges` and the reservation block encode addresses and sizes. Zero cells read as 0.
    /// Returns nil when the value is too short or `cells` is above 2.
    public func number(at index: Int, cells: Int) -> UInt64? {
        guard index >= 0, cells >= 0, cells <= 2, index + cells <= cellCount else { return nil }
        var result: UInt64 = 0
        var cell = 0
        while cell < cells {
            result = result << 32 | UInt64(DeviceTree.word(value, (index + cell) * 4))
            cell += 1
        }
        return result
    }

    /// The value when it is exactly one cell (`#address-cells`, `phandle`, ...), else nil.
    public var u32Value: UInt32? { value.count == 4 ? DeviceTree.word(value, 0) : nil }

    /// The first NUL-terminated string of the value, or nil when the value holds no NUL.
    public var stringValue: DeviceTreeString? {
        var result: DeviceTreeString?
        forEachString { string in
            result = string
            return false
        }
        return result
    }

    /// Calls `body` with each NUL-terminated string of a string-list value (`compatible`,
    /// `clock-names`) until it returns false. Bytes after the last NUL are ignored.
    public func forEachString(_ body: (DeviceTreeString) -> Bool) {
        var start = 0
        var index = 0
        while index < value.count {
            if value[index] == 0 {
                let string = DeviceTreeString(UnsafeRawBufferPointer(rebasing: value[start..<index]))
                if !body(string) { return }
                start = index + 1
            }
            index += 1
        }
    }

    /// True when one string of the string-list value equals `string`.
    public func containsString(_ string: StaticString) -> Bool {
        var found = false
        forEachString { candidate in
            found = candidate == string
            return !found
        }
        return found
    }
}

// MARK: - Strings

/// Bytes of a name or string value inside the blob, without the terminating NUL.
/// Compares by content with other blob strings and with `StaticString` literals.
public struct DeviceTreeString: Equatable {
    /// The string's bytes (no NUL).
    public let bytes: UnsafeRawBufferPointer

    @inline(__always) init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Number of bytes.
    public var count: Int { bytes.count }
    /// True for "".
    public var isEmpty: Bool { bytes.isEmpty }

    /// The byte at `index`; the caller passes 0..<count.
    public subscript(index: Int) -> UInt8 { bytes[index] }

    /// The bytes before the first `separator`, or all of them when there is none.
    public func prefix(upTo separator: UInt8) -> DeviceTreeString {
        var index = 0
        while index < count && bytes[index] != separator { index += 1 }
        return DeviceTreeString(UnsafeRawBufferPointer(rebasing: bytes[0..<index]))
    }

    /// The bytes after the first `separator`, or nil when there is none.
    public func suffix(after separator: UInt8) -> DeviceTreeString? {
        var index = 0
        while index < count && bytes[index] != separator { index += 1 }
        guard index < count else { return nil }
        return DeviceTreeString(UnsafeRawBufferPointer(rebasing: bytes[(index + 1)..<count]))
    }

    /// The bytes from `start` to the end; the caller passes 0...count.
    func dropFirst(_ start: Int) -> DeviceTreeString {
        DeviceTreeString(UnsafeRawBufferPointer(rebasing: bytes[start..<count]))
    }

    /// True when the string starts with `prefix`.
    public func hasPrefix(_ prefix: StaticString) -> Bool {
        prefix.withUTF8Buffer { literal in
            guard literal.count <= count else { return false }
            var index = 0
            while index < literal.count {
                if literal[index] != bytes[index] { return false }
                index += 1
            }
            return true
        }
    }

    /// True when both hold the same bytes.
    public static func == (a: DeviceTreeString, b: DeviceTreeString) -> Bool {
        guard a.count == b.count else { return false }
        var index = 0
        while index < a.count {
            if a.bytes[index] != b.bytes[index] { return false }
            index += 1
        }
        return true
    }

    /// True when `a` holds exactly the UTF-8 bytes of `b`.
    public static func == (a: DeviceTreeString, b: StaticString) -> Bool {
        b.withUTF8Buffer { literal in
            guard literal.count == a.count else { return false }
            var index = 0
            while index < literal.count {
                if literal[index] != a.bytes[index] { return false }
                index += 1
            }
            return true
        }
    }

    /// True when `a` differs from the UTF-8 bytes of `b`.
    public static func != (a: DeviceTreeString, b: StaticString) -> Bool { !(a == b) }
}
