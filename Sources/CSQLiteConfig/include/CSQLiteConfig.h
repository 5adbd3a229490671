#ifndef CSQLITECONFIG_H
#define CSQLITECONFIG_H

/// Process-wide SQLite settings, applied by a constructor when the binary loads (before any connection can
/// open, which `sqlite3_config` requires):
/// - SQLite's memory statistics are off (SQLITE_CONFIG_MEMSTATUS = 0), so that its allocations no longer take
///   a global mutex each;
/// - a thin layer over SQLite's default page cache forwards every call, except truncations that cannot drop
///   any page (see config.c: on databases under 1 GiB, SQLite 3.40 scans its whole page cache at each
///   commit);
/// - the default VFS is the unix one, except that a WAL file writes a commit's frames in one call instead
///   of two per page, before SQLite publishes the commit (see config.c).
/// `sqlite3_config` is variadic, which Swift cannot call. Returns 1 when all three took effect.
int sessiond_sqlite_configured(void);

/// Flushes the main database file of the connection `db` (a `sqlite3 *`), then its WAL, to disk through
/// SQLite's own file handles (`fdatasync` on Linux). The connection must have opened the WAL. Returns an
/// SQLite result code.
int sessiond_sync_database_and_wal(void *db);

/// After each commit of the connection `db` (a `sqlite3 *`), stores the number of frames in its WAL into
/// `*counter`, on the committing thread; a NULL `counter` stops it. It replaces the connection's WAL hook,
/// which is SQLite's automatic checkpoint unless `PRAGMA wal_autocheckpoint = 0`.
void sessiond_count_wal_frames(void *db, int *counter);

/// What a WAL handle was asked to write and what it wrote.
typedef struct {
    /// Writes SQLite asked for.
    long long writesAsked;
    /// Writes made to the file.
    long long writesMade;
    /// Writes SQLite asked for before the end of what the handle had written since the WAL started over:
    /// frames rewritten in place in a transaction that spilled pages.
    long long rewrites;
} sessiond_wal_buffer_counts;

/// Copies the counts of the WAL handle of the connection `db` (a `sqlite3 *`) into `*counts`. Returns 0, and
/// copies nothing, when the connection has not opened its WAL through the buffering VFS.
int sessiond_wal_buffer_counts_of(void *db, sessiond_wal_buffer_counts *counts);

/// For tests, a full disk under the WAL of the connection `db` (a `sqlite3 *`): once `afterWrites` more writes
/// to the file have succeeded, each one fails with `SQLITE_FULL`; a negative `afterWrites` ends the failures.
/// Returns 0 when the connection has not opened its WAL through the buffering VFS.
int sessiond_wal_buffer_fail_writes(void *db, long long afterWrites);

/// For tests, one cache of that layer driven directly, with 4 KiB pages: `create` returns NULL unless the
/// layer is installed; `fetch` answers whether a page with the key is cached, adding it first if `create`;
/// `rekey` moves a cached page to another key; `truncate` asks to drop every key from `limit` on; and
/// `forwarded` counts the truncations passed on to SQLite's cache.
void *sessiond_page_cache_test_create(void);
int sessiond_page_cache_test_fetch(void *cache, unsigned key, int create);
void sessiond_page_cache_test_rekey(void *cache, unsigned oldKey, unsigned newKey);
void sessiond_page_cache_test_truncate(void *cache, unsigned limit);
unsigned sessiond_page_cache_test_forwarded(void *cache);
void sessiond_page_cache_test_destroy(void *cache);

#endif
