import Testing

@testable import RealtimeCore

/// `PatternIndex` (and its `SlotSet`) on its own: insert, remove, match, churn. No hub.
@Suite struct PatternIndexTests {
    func pattern(_ text: String) throws -> EventPattern { try EventPattern(validating: text) }

    /// The slots matching `type`, with how many of the index's sets named each one.
    func matches(_ index: PatternIndex, _ type: EventType) -> [Int: Int] {
        var counts: [Int: Int] = [:]
        index.forEachMatch(MatchKey(type)) { set in
            for slot in set { counts[slot, default: 0] += 1 }
        }
        return counts
    }

    @Test func exactPrefixMiddleWildcardAndEverythingPatternsMatchAsSpecified() throws {
        var index = PatternIndex()
        index.insert(try pattern("auth.login.failure"), slot: 1)
        index.insert(try pattern("auth.*"), slot: 2)
        index.insert(try pattern("auth.*.failure"), slot: 3)
        index.insert(try pattern("*"), slot: 4)
        index.insert(try pattern("auth.login"), slot: 5)
        #expect(index.entryCount == 5)
        #expect(matches(index, "auth.login.failure") == [1: 1, 2: 1, 3: 1, 4: 1])
        #expect(matches(index, "auth.login") == [2: 1, 4: 1, 5: 1])
        // A trailing wildcard needs at least one more segment; `*` alone matches every type.
        #expect(matches(index, "auth") == [4: 1])
        #expect(matches(index, "auth.logout.failure") == [2: 1, 3: 1, 4: 1])
        #expect(matches(index, "auth.login.success") == [2: 1, 4: 1])
        #expect(matches(index, "security.login.failure") == [4: 1])
    }

    @Test func aSlotWithSeveralMatchingPatternsIsYieldedOncePerPattern() throws {
        var index = PatternIndex()
        for text in ["*", "auth.*", "auth.login", "*.login"] { index.insert(try pattern(text), slot: 7) }
        #expect(matches(index, "auth.login") == [7: 4])
        #expect(matches(index, "session.login") == [7: 2])
    }

    @Test func insertingTwiceAndRemovingWhatIsNotThereChangeNothing() throws {
        var index = PatternIndex()
        index.insert(try pattern("auth.*"), slot: 1)
        index.insert(try pattern("auth.*"), slot: 1)
        #expect(index.entryCount == 1)
        index.remove(try pattern("auth.*"), slot: 2)
        index.remove(try pattern("auth.login"), slot: 1)
        index.remove(try pattern("security.*"), slot: 1)
        #expect(index.entryCount == 1)
        #expect(matches(index, "auth.login") == [1: 1])
        index.remove(try pattern("auth.*"), slot: 1)
        #expect(index.entryCount == 0)
        #expect(matches(index, "auth.login").isEmpty)
    }

    @Test func removingOneSlotLeavesTheOthersOnTheSamePattern() throws {
        var index = PatternIndex()
        for slot in 0..<5 { index.insert(try pattern("auth.*.failure"), slot: slot) }
        index.remove(try pattern("auth.*.failure"), slot: 0)
        index.remove(try pattern("auth.*.failure"), slot: 3)
        #expect(matches(index, "auth.login.failure") == [1: 1, 2: 1, 4: 1])
        #expect(index.entryCount == 3)
    }

    @Test func churnOfDistinctPatternsLeavesNothingBehind() throws {
        var index = PatternIndex()
        var generator = SystemRandomNumberGenerator()
        var inserted: [(EventPattern, Int)] = []
        let shapes: [(Int) -> String] = [
            { "c\($0).x" }, { "c\($0).*" }, { "c\($0).*.y" }, { "*.c\($0)" }, { "c\($0).x.*" },
        ]
        for number in 0..<400 {
            let shape = shapes[number % shapes.count](number)
            let entry = (try pattern(shape), Int.random(in: 0..<50, using: &generator))
            index.insert(entry.0, slot: entry.1)
            inserted.append(entry)
        }
        #expect(index.entryCount == 400)
        #expect(matches(index, "c5.x").count == 1)  // "c5.x" (and no other pattern)
        inserted.shuffle(using: &generator)
        for (pattern, slot) in inserted { index.remove(pattern, slot: slot) }
        #expect(index.entryCount == 0)
        for number in [0, 1, 2, 3, 4, 399] {
            for type in ["c\(number).x", "c\(number).x.y", "z.c\(number)", "c\(number).q.y"] {
                #expect(matches(index, EventType(type)).isEmpty, "\(type)")
            }
        }
        // The trie is usable again after it was emptied.
        index.insert(try pattern("c1.*"), slot: 9)
        #expect(matches(index, "c1.x") == [9: 1])
    }

    @Test func slotSetRemovesBySwappingInTheLastMember() {
        var set = SlotSet()
        let inserted = [set.insert(1), set.insert(2), set.insert(3), set.insert(2)]
        #expect(inserted == [true, true, true, false])
        let removedFirst = [set.remove(1), set.remove(1)]
        #expect(removedFirst == [true, false])
        #expect(set.members == [3, 2])
        #expect(set.count == 2)
        let removedRest = [set.remove(2), set.remove(3)]
        #expect(removedRest == [true, true])
        #expect(set.isEmpty)
        let again = set.insert(1)
        #expect(again)
        #expect(set.members == [1])
    }
}
