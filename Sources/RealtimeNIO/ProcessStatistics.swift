// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Statistics of this process that a host supplies to the hub (`HubConfiguration.residentMemoryBytes`).
public enum ProcessStatistics {
    /// Resident memory of this process, from `/proc/self/statm` (Linux), or `nil` elsewhere or on failure. A
    /// read of a small procfs file: cheap, and done only when statistics are asked for.
    @Sendable public static func residentMemoryBytes() -> Int? {
        #if os(Linux)
            let fd = open("/proc/self/statm", O_RDONLY)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 128)
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 127) }
            guard count > 0 else { return nil }
            let fields = String(decoding: buffer[0..<count], as: UTF8.self).split(separator: " ")
            guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
            return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        #else
            return nil
        #endif
    }
}
