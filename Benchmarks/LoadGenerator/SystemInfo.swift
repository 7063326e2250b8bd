// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the operating system says about this process and the server's.
enum SystemInfo {
    /// Raises this process's open-file limit to at least `wanted` (the hard limit too, when running as root).
    /// Returns the soft limit in force afterwards.
    static func raiseFileLimit(to wanted: Int) -> Int {
        var limit = rlimit()
        #if os(Linux)
            let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
            let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return -1 }
        let target = rlim_t(wanted)
        if limit.rlim_cur >= target { return Int(limit.rlim_cur) }
        if limit.rlim_max < target {
            var raised = limit
            raised.rlim_max = target
            raised.rlim_cur = target
            if setrlimit(resource, &raised) == 0 { return wanted }
        }
        limit.rlim_cur = min(target, limit.rlim_max)
        _ = setrlimit(resource, &limit)
        _ = getrlimit(resource, &limit)
        return Int(limit.rlim_cur)
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, `RssAnon`), if readable.
    static func statusKiB(pid: Int32, field: String) -> Int? {
        guard let text = readText("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let digits = line.dropFirst(field.count + 1).filter { $0.isNumber }
            return Int(digits)
        }
        return nil
    }

    /// User and system CPU seconds of a process, from `/proc/PID/stat`.
    static func cpuTimes(pid: Int32) -> CPUTimes? {
        guard let text = readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime field 14, stime field 15 (1-based over the whole line).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return CPUTimes(user: user / ticks, system: system / ticks)
    }

    /// This process's user plus system CPU seconds.
    static func ownCPUSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        #else
            getrusage(RUSAGE_SELF, &usage)
        #endif
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// `/proc/loadavg`'s first three fields.
    static func loadAverage() -> String {
        guard let text = readText("/proc/loadavg") else { return "unknown" }
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    static func processExists(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    /// Ends the process at once (the watchdog of the hard time cap).
    static func terminate(_ status: Int32) -> Never { exit(status) }

    /// Reads a small text file (at most 64 KiB).
    static func readText(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The server's processes (`--server-pid`, every nginx process for Nchan): figures summed over all of them, `nil`
/// when no PID was given or one of them cannot be read.
struct ServerProcesses {
    let pids: [Int32]

    func rssKiB() -> Int? { sum { SystemInfo.statusKiB(pid: $0, field: "VmRSS") } }
    func peakRSSKiB() -> Int? { sum { SystemInfo.statusKiB(pid: $0, field: "VmHWM") } }
    /// User and system CPU time.
    func cpuTimes() -> CPUTimes? { sum { SystemInfo.cpuTimes(pid: $0) } }

    private func sum<Value: AdditiveArithmetic>(_ read: (Int32) -> Value?) -> Value? {
        guard !pids.isEmpty else { return nil }
        var total = Value.zero
        for pid in pids {
            guard let value = read(pid) else { return nil }
            total += value
        }
        return total
    }
}

/// CPU seconds of a process (or several), in user space and in the kernel on its behalf (system calls, and the
/// loopback receive work charged to the sender).
struct CPUTimes: AdditiveArithmetic {
    var user: Double
    var system: Double

    var total: Double { user + system }

    static let zero = CPUTimes(user: 0, system: 0)

    static func + (lhs: CPUTimes, rhs: CPUTimes) -> CPUTimes {
        CPUTimes(user: lhs.user + rhs.user, system: lhs.system + rhs.system)
    }

    static func - (lhs: CPUTimes, rhs: CPUTimes) -> CPUTimes {
        CPUTimes(user: lhs.user - rhs.user, system: lhs.system - rhs.system)
    }
}
