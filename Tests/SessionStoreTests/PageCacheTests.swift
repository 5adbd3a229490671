import CSQLiteConfig
import Foundation
import Testing

@testable import SessionStore

/// The layer over SQLite's page cache (CSQLiteConfig) passes on every truncation that can drop a page, and
/// only those: SQLite 3.40 scanned its whole cache for each of the others.
@Suite struct PageCacheTests {
    /// The pending-byte page's number with 4 KiB pages, where SQLite 3.40 parks a page during a swap.
    private let parkingKey: UInt32 = 0x4000_0000 / 4096 + 1

    /// The settings apply when the binary loads, before any test (or anything else) opens SQLite.
    @Test func theProcessWideSettingsTookEffect() {
        #expect(SessionDatabase.sqliteConfigured)
    }

    /// A cache of the installed layer, with pages 1...`pages` in it.
    private func makeCache(pages: UInt32) throws -> UnsafeMutableRawPointer {
        let cache = try #require(sessiond_page_cache_test_create(), "the page-cache layer is not installed")
        for key in 1...pages { #expect(sessiond_page_cache_test_fetch(cache, key, 1) == 1) }
        return cache
    }

    @Test func aTruncationPastEveryPageIsNotPassedOn() throws {
        let cache = try makeCache(pages: 50)
        defer { sessiond_page_cache_test_destroy(cache) }
        sessiond_page_cache_test_truncate(cache, 51)
        #expect(sessiond_page_cache_test_forwarded(cache) == 0)
        // A probe for a key that is not cached adds nothing (SQLite probes a key before moving a page to it).
        #expect(sessiond_page_cache_test_fetch(cache, parkingKey, 0) == 0)
        sessiond_page_cache_test_truncate(cache, 51)
        #expect(sessiond_page_cache_test_forwarded(cache) == 0)
        for key: UInt32 in [1, 25, 50] { #expect(sessiond_page_cache_test_fetch(cache, key, 0) == 1) }
    }

    @Test func aTruncationThatCanDropAPageIsPassedOnAndDropsIt() throws {
        let cache = try makeCache(pages: 50)
        defer { sessiond_page_cache_test_destroy(cache) }
        #expect(sessiond_page_cache_test_fetch(cache, 60, 1) == 1)  // a transaction grew the database
        sessiond_page_cache_test_truncate(cache, 51)  // and rolled back
        #expect(sessiond_page_cache_test_forwarded(cache) == 1)
        #expect(sessiond_page_cache_test_fetch(cache, 60, 0) == 0)
        #expect(sessiond_page_cache_test_fetch(cache, 50, 0) == 1)
        // The largest key is back at 50: the next truncation past it is not passed on.
        sessiond_page_cache_test_truncate(cache, 51)
        #expect(sessiond_page_cache_test_forwarded(cache) == 1)
    }

    /// A B-tree split swaps pages 10 and 20 through the parking key, as `balance_nonroot` does.
    @Test func aSwapThroughAParkingKeyLeavesNothingToDrop() throws {
        let cache = try makeCache(pages: 50)
        defer { sessiond_page_cache_test_destroy(cache) }
        #expect(sessiond_page_cache_test_fetch(cache, parkingKey, 0) == 0)
        sessiond_page_cache_test_rekey(cache, 10, parkingKey)
        sessiond_page_cache_test_rekey(cache, 20, 10)
        sessiond_page_cache_test_rekey(cache, parkingKey, 20)
        sessiond_page_cache_test_truncate(cache, 51)
        #expect(sessiond_page_cache_test_forwarded(cache) == 0)
        for key: UInt32 in [10, 20] { #expect(sessiond_page_cache_test_fetch(cache, key, 0) == 1) }
        #expect(sessiond_page_cache_test_fetch(cache, parkingKey, 0) == 0)
    }

    @Test func aPageStillParkedIsDroppedByTheNextTruncation() throws {
        let cache = try makeCache(pages: 50)
        defer { sessiond_page_cache_test_destroy(cache) }
        sessiond_page_cache_test_rekey(cache, 30, parkingKey)
        sessiond_page_cache_test_truncate(cache, 51)
        #expect(sessiond_page_cache_test_forwarded(cache) == 1)
        #expect(sessiond_page_cache_test_fetch(cache, parkingKey, 0) == 0)
        #expect(sessiond_page_cache_test_fetch(cache, 29, 0) == 1)
    }
}
