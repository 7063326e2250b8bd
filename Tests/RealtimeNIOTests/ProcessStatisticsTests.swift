// SPDX-License-Identifier: Apache-2.0

import RealtimeNIO
import Testing

@Suite struct ProcessStatisticsTests {
    @Test(.enabled(if: ProcessStatisticsTests.isLinux)) func residentMemoryIsReadFromProcfs() throws {
        let bytes = try #require(ProcessStatistics.residentMemoryBytes())
        // A test process holds at least a megabyte and far less than the machine's memory.
        #expect(bytes > 1 << 20)
        #expect(bytes < 1 << 40)
    }

    static var isLinux: Bool {
        #if os(Linux)
            true
        #else
            false
        #endif
    }
}
