#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include "CSQLiteConfig.h"

// MARK: - The page cache, with truncations that cannot drop anything skipped

/// SQLite's own page cache (pcache1), to which every call is forwarded.
static sqlite3_pcache_methods2 base;

/// Keys a page may be moved to past every key seen, in the middle of a swap (see `cacheRekey`).
enum { parkedCapacity = 8 };

/// One cache (one connection's pages): pcache1's, and the largest page number it can hold.
typedef struct {
    sqlite3_pcache *base;
    /// No page in the cache has a larger key. Only grows, except by a truncation that is forwarded.
    unsigned maxKey;
    /// Keys past `maxKey` that a page was moved to and not yet moved away from.
    unsigned parked[parkedCapacity];
    int parkedCount;
    /// Truncations passed on to pcache1 (read by tests).
    unsigned forwarded;
} Cache;

/// Whether the layer is SQLite's page cache (see `installPageCache`).
static int installed;

static int cacheInit(void *arg) { return base.xInit(arg); }
static void cacheShutdown(void *arg) { base.xShutdown(arg); }

static sqlite3_pcache *cacheCreate(int pageSize, int extraSize, int purgeable) {
    Cache *cache = calloc(1, sizeof(Cache));
    if (cache == NULL) return NULL;
    cache->base = base.xCreate(pageSize, extraSize, purgeable);
    if (cache->base == NULL) {
        free(cache);
        return NULL;
    }
    return (sqlite3_pcache *)cache;
}

static void cacheCachesize(sqlite3_pcache *p, int size) { base.xCachesize(((Cache *)p)->base, size); }
static int cachePagecount(sqlite3_pcache *p) { return base.xPagecount(((Cache *)p)->base); }

static sqlite3_pcache_page *cacheFetch(sqlite3_pcache *p, unsigned key, int createFlag) {
    Cache *cache = (Cache *)p;
    sqlite3_pcache_page *page = base.xFetch(cache->base, key, createFlag);
    // A miss adds nothing (SQLite probes the key a page moves to before moving it).
    if (page != NULL && key > cache->maxKey) cache->maxKey = key;
    return page;
}

static void cacheUnpin(sqlite3_pcache *p, sqlite3_pcache_page *page, int discard) {
    base.xUnpin(((Cache *)p)->base, page, discard);
}

/// A B-tree split that swaps two page numbers parks one page at a spare number in between: the
/// pending-byte page (262,145 with 4 KiB pages) in SQLite 3.40, the database's end plus one in later
/// versions. Such a key stays out of `maxKey` while it is parked; if it is still parked when a truncation
/// comes, it counts from then on.
static void cacheRekey(sqlite3_pcache *p, sqlite3_pcache_page *page, unsigned oldKey, unsigned newKey) {
    Cache *cache = (Cache *)p;
    for (int index = 0; index < cache->parkedCount; index++) {
        if (cache->parked[index] == oldKey) {
            cache->parked[index] = cache->parked[--cache->parkedCount];
            break;
        }
    }
    if (newKey > cache->maxKey) {
        if (cache->parkedCount < parkedCapacity) {
            cache->parked[cache->parkedCount++] = newKey;
        } else {
            cache->maxKey = newKey;
        }
    }
    base.xRekey(cache->base, page, oldKey, newKey);
}

/// Drops the pages whose key is `limit` or more, which SQLite asks for at the end of every transaction.
/// pcache1 walks its whole hash table for it whenever the largest key it has ever held is far past
/// `limit`, and a parked page leaves that key at 262,145 for good in SQLite 3.40: each commit on a
/// database under 1 GiB then scanned every cached page (13 % of the writer's time). When no page can have
/// such a key, there is nothing to drop, and the call is not forwarded.
static void cacheTruncate(sqlite3_pcache *p, unsigned limit) {
    Cache *cache = (Cache *)p;
    for (int index = 0; index < cache->parkedCount; index++) {
        if (cache->parked[index] > cache->maxKey) cache->maxKey = cache->parked[index];
    }
    cache->parkedCount = 0;
    if (limit > cache->maxKey) return;
    cache->forwarded++;
    base.xTruncate(cache->base, limit);
    cache->maxKey = limit > 0 ? limit - 1 : 0;
}

static void cacheDestroy(sqlite3_pcache *p) {
    Cache *cache = (Cache *)p;
    base.xDestroy(cache->base);
    free(cache);
}

static void cacheShrink(sqlite3_pcache *p) { base.xShrink(((Cache *)p)->base); }

/// Puts the layer in place of SQLite's default page cache; sets `installed` when it took.
static void installPageCache(void) {
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base) != SQLITE_OK || base.xCreate == NULL) return;
    sqlite3_pcache_methods2 methods = {
        .iVersion = base.iVersion,
        .pArg = base.pArg,
        .xInit = base.xInit ? cacheInit : NULL,
        .xShutdown = base.xShutdown ? cacheShutdown : NULL,
        .xCreate = cacheCreate,
        .xCachesize = cacheCachesize,
        .xPagecount = cachePagecount,
        .xFetch = cacheFetch,
        .xUnpin = cacheUnpin,
        .xRekey = cacheRekey,
        .xTruncate = cacheTruncate,
        .xDestroy = cacheDestroy,
        .xShrink = base.xShrink ? cacheShrink : NULL,
    };
    installed = sqlite3_config(SQLITE_CONFIG_PCACHE2, &methods) == SQLITE_OK;
}

// MARK: - A commit's WAL frames, written in one call

/// SQLite writes each WAL frame in two calls, its 24-byte header and then its page: two `pwrite`s per page,
/// 12 % of the writer's time under turns. A WAL file opened through this VFS keeps the appends of a commit
/// in a buffer and writes them in one call, before SQLite can publish the commit to other connections.
///
/// SQLite publishes a commit (its wal-index header) right after writing the commit frame, the one whose
/// header holds the database size in pages, without another call on the WAL file unless it syncs. So the
/// buffer is written once it holds the whole commit frame: after the frame's page when SQLite appends it.
/// When a commit frame's header or page lands on bytes this handle wrote before, the handle cannot tell
/// whether the rest of the frame is still to come (a transaction that failed or rolled back left frames
/// there) or already written (`walRewriteChecksums` rewrites the header of a frame appended earlier in the
/// same commit, after pages were spilled), so each such write goes out at once. Any other call that could
/// see the file (read, size, sync, truncate, file control, close), a write that does not continue the
/// buffer, and a full buffer write it out first; a failed write is the failing call's error, so SQLite
/// rolls the commit back instead of publishing it. Files other than WALs are SQLite's own.

/// The unix VFS, which does the I/O.
static sqlite3_vfs *baseVFS;
static sqlite3_vfs walBufferVFS;
static const sqlite3_io_methods walMethods;

/// The most bytes a WAL handle keeps: 256 frames of 4 KiB pages. A larger commit is written in parts.
/// The unix VFS writes at most 128 KiB - 1 bytes per call (it masks the length), so the buffer goes out in
/// parts of 30 frames.
enum {
    walBufferCapacity = 1 << 20,
    walWriteLimit = 30 * (4096 + 24),
    walHeaderSize = 32,
    walFrameHeaderSize = 24,
};

typedef struct {
    sqlite3_file base;
    /// The unix VFS's handle, in the memory right after this struct.
    sqlite3_file *real;
    /// Bytes not yet written, for `[pendingStart, pendingStart + pendingLength)`; allocated at the first write.
    unsigned char *pending;
    sqlite3_int64 pendingStart;
    int pendingLength;
    /// From the WAL header; 0 until known, -1 when it cannot be, and then every write goes straight through.
    int pageSize;
    /// How far this handle has written since the WAL last started over (a write at offset 0), buffered
    /// bytes included. Bytes before it may be frames of a transaction that never committed.
    sqlite3_int64 frontier;
    /// Where the last commit frame seen ends, until the buffer has held it whole; 0 when none is waiting.
    sqlite3_int64 commitEnd;
    /// For tests: what SQLite asked for and what this handle did.
    sessiond_wal_buffer_counts counts;
    /// For tests: writes to the file that succeed before each one fails with `SQLITE_FULL`; -1 for no failures.
    long long writesBeforeFailure;
} WALFile;

static sqlite3_file *realFile(sqlite3_file *file) { return ((WALFile *)file)->real; }

/// One write to the file.
static int writeThrough(WALFile *wal, const void *data, int amount, sqlite3_int64 offset) {
    if (wal->writesBeforeFailure == 0) return SQLITE_FULL;
    if (wal->writesBeforeFailure > 0) wal->writesBeforeFailure--;
    wal->counts.writesMade++;
    return wal->real->pMethods->xWrite(wal->real, data, amount, offset);
}

/// Writes the buffer out. Buffered bytes that failed are dropped: SQLite never published them, and the
/// commit that wrote them fails with this error.
static int flushWAL(WALFile *wal) {
    if (wal->pendingLength == 0) return SQLITE_OK;
    int length = wal->pendingLength;
    wal->pendingLength = 0;
    for (int done = 0; done < length; done += walWriteLimit) {
        int part = length - done < walWriteLimit ? length - done : walWriteLimit;
        int rc = writeThrough(wal, wal->pending + done, part, wal->pendingStart + done);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static unsigned readBigEndian32(const unsigned char *bytes) {
    return (unsigned)bytes[0] << 24 | (unsigned)bytes[1] << 16 | (unsigned)bytes[2] << 8 | bytes[3];
}

/// A WAL header's page size, or -1 when it holds none that SQLite could have written.
static int headerPageSize(const unsigned char *header) {
    unsigned size = readBigEndian32(header + 8);
    return size >= 512 && size <= 65536 && (size & (size - 1)) == 0 ? (int)size : -1;
}

/// Learns the page size from the header of a WAL that this handle found written (nothing is buffered until
/// the page size is known).
static void learnPageSize(WALFile *wal) {
    unsigned char header[walHeaderSize];
    int rc = wal->real->pMethods->xRead(wal->real, header, walHeaderSize, 0);
    wal->pageSize = rc == SQLITE_OK ? headerPageSize(header) : -1;
}

/// Notes the last commit frame whose header lies in this write.
static void noteCommitFrames(WALFile *wal, const unsigned char *data, int amount, sqlite3_int64 offset) {
    sqlite3_int64 frameSize = walFrameHeaderSize + wal->pageSize;
    sqlite3_int64 header = walHeaderSize;
    if (offset > header) header += (offset - header + frameSize - 1) / frameSize * frameSize;
    for (; header + walFrameHeaderSize <= offset + amount; header += frameSize) {
        // Bytes 4-7 of a frame header: the database size after the commit, zero for other frames.
        if (readBigEndian32(data + (header - offset) + 4) != 0) wal->commitEnd = header + frameSize;
    }
}

/// A write at offset 0 is the header of a WAL that starts over.
static void advanceFrontier(WALFile *wal, int amount, sqlite3_int64 offset) {
    if (offset == 0) wal->frontier = amount;
    else if (offset + amount > wal->frontier) wal->frontier = offset + amount;
}

static int walWrite(sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset) {
    WALFile *wal = (WALFile *)file;
    wal->counts.writesAsked++;
    if (offset > 0 && offset < wal->frontier) wal->counts.rewrites++;
    int rc = SQLITE_OK;
    if (wal->pendingLength > 0
        && (offset != wal->pendingStart + wal->pendingLength || wal->pendingLength + amount > walBufferCapacity)) {
        rc = flushWAL(wal);
        if (rc != SQLITE_OK) return rc;
    }
    if (offset == 0 && amount >= walHeaderSize) wal->pageSize = headerPageSize(data);
    if (wal->pageSize == 0) learnPageSize(wal);
    if (wal->pageSize > 0 && wal->pending == NULL) wal->pending = sqlite3_malloc(walBufferCapacity);
    if (wal->pageSize < 0 || wal->pending == NULL || amount > walWriteLimit) {
        rc = flushWAL(wal);
        if (rc == SQLITE_OK) rc = writeThrough(wal, data, amount, offset);
        if (rc == SQLITE_OK) advanceFrontier(wal, amount, offset);
        return rc;
    }
    int overwrites = offset < wal->frontier;
    if (offset == 0) wal->commitEnd = 0;
    noteCommitFrames(wal, data, amount, offset);
    if (wal->pendingLength == 0) wal->pendingStart = offset;
    memcpy(wal->pending + wal->pendingLength, data, (size_t)amount);
    wal->pendingLength += amount;
    advanceFrontier(wal, amount, offset);
    if (wal->commitEnd == 0) return SQLITE_OK;
    if (wal->pendingStart + wal->pendingLength >= wal->commitEnd) {
        wal->commitEnd = 0;
        return flushWAL(wal);
    }
    return overwrites ? flushWAL(wal) : SQLITE_OK;
}

static int walClose(sqlite3_file *file) {
    WALFile *wal = (WALFile *)file;
    int rc = flushWAL(wal);
    int closed = wal->real->pMethods->xClose(wal->real);
    sqlite3_free(wal->pending);
    wal->pending = NULL;
    return rc != SQLITE_OK ? rc : closed;
}

static int walRead(sqlite3_file *file, void *data, int amount, sqlite3_int64 offset) {
    int rc = flushWAL((WALFile *)file);
    return rc != SQLITE_OK ? rc : realFile(file)->pMethods->xRead(realFile(file), data, amount, offset);
}

static int walTruncate(sqlite3_file *file, sqlite3_int64 size) {
    WALFile *wal = (WALFile *)file;
    int rc = flushWAL(wal);
    if (rc == SQLITE_OK) rc = wal->real->pMethods->xTruncate(wal->real, size);
    if (rc == SQLITE_OK && size < wal->frontier) wal->frontier = size;
    return rc;
}

static int walSync(sqlite3_file *file, int flags) {
    int rc = flushWAL((WALFile *)file);
    return rc != SQLITE_OK ? rc : realFile(file)->pMethods->xSync(realFile(file), flags);
}

static int walFileSize(sqlite3_file *file, sqlite3_int64 *size) {
    int rc = flushWAL((WALFile *)file);
    return rc != SQLITE_OK ? rc : realFile(file)->pMethods->xFileSize(realFile(file), size);
}

static int walFileControl(sqlite3_file *file, int op, void *argument) {
    int rc = flushWAL((WALFile *)file);
    return rc != SQLITE_OK ? rc : realFile(file)->pMethods->xFileControl(realFile(file), op, argument);
}

static int walLock(sqlite3_file *file, int lock) { return realFile(file)->pMethods->xLock(realFile(file), lock); }
static int walUnlock(sqlite3_file *file, int lock) {
    return realFile(file)->pMethods->xUnlock(realFile(file), lock);
}
static int walCheckReservedLock(sqlite3_file *file, int *reserved) {
    return realFile(file)->pMethods->xCheckReservedLock(realFile(file), reserved);
}
static int walSectorSize(sqlite3_file *file) { return realFile(file)->pMethods->xSectorSize(realFile(file)); }
static int walDeviceCharacteristics(sqlite3_file *file) {
    return realFile(file)->pMethods->xDeviceCharacteristics(realFile(file));
}

/// Version 1: SQLite maps no shared memory and no pages through a WAL handle.
static const sqlite3_io_methods walMethods = {
    .iVersion = 1,
    .xClose = walClose,
    .xRead = walRead,
    .xWrite = walWrite,
    .xTruncate = walTruncate,
    .xSync = walSync,
    .xFileSize = walFileSize,
    .xLock = walLock,
    .xUnlock = walUnlock,
    .xCheckReservedLock = walCheckReservedLock,
    .xFileControl = walFileControl,
    .xSectorSize = walSectorSize,
    .xDeviceCharacteristics = walDeviceCharacteristics,
};

static int walBufferOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *outFlags) {
    (void)vfs;
    if (!(flags & SQLITE_OPEN_WAL)) return baseVFS->xOpen(baseVFS, name, file, flags, outFlags);
    WALFile *wal = (WALFile *)file;
    memset(wal, 0, sizeof *wal);
    wal->writesBeforeFailure = -1;
    wal->real = (sqlite3_file *)(wal + 1);
    int rc = baseVFS->xOpen(baseVFS, name, wal->real, flags, outFlags);
    // SQLite closes a handle whose open failed when it has methods; ours then close the unix one.
    wal->base.pMethods = wal->real->pMethods != NULL ? &walMethods : NULL;
    return rc;
}

/// Makes the buffering VFS the default one, over the default unix VFS; returns whether it took.
static int installWALBuffer(void) {
    baseVFS = sqlite3_vfs_find(NULL);
    if (baseVFS == NULL) return 0;
    walBufferVFS = *baseVFS;
    walBufferVFS.pNext = NULL;
    walBufferVFS.zName = "sessiond-wal-buffer";
    walBufferVFS.szOsFile = (int)sizeof(WALFile) + baseVFS->szOsFile;
    walBufferVFS.xOpen = walBufferOpen;
    return sqlite3_vfs_register(&walBufferVFS, 1) == SQLITE_OK;
}

/// The buffered WAL handle of the connection `db`, or NULL.
static WALFile *walFileOf(void *db) {
    sqlite3_file *file = NULL;
    if (db == NULL || sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &file) != SQLITE_OK) return NULL;
    return file != NULL && file->pMethods == &walMethods ? (WALFile *)file : NULL;
}

int sessiond_wal_buffer_counts_of(void *db, sessiond_wal_buffer_counts *counts) {
    WALFile *wal = walFileOf(db);
    if (wal == NULL) return 0;
    *counts = wal->counts;
    return 1;
}

int sessiond_wal_buffer_fail_writes(void *db, long long afterWrites) {
    WALFile *wal = walFileOf(db);
    if (wal == NULL) return 0;
    wal->writesBeforeFailure = afterWrites < 0 ? -1 : afterWrites;
    return 1;
}

// MARK: - Applied when the binary loads

/// Whether the memory statistics are off.
static int memstatusOff;
/// Whether the WAL buffer is the default VFS.
static int walBufferInstalled;

/// Runs before `main` and before any static initializer of Swift code, so before anything can open a
/// connection: `sqlite3_config` only works before SQLite initializes, and a test runner or a tool that
/// opened SQLite first would otherwise keep the defaults. The VFS comes last: registering one initializes
/// SQLite.
__attribute__((constructor)) static void configureSQLite(void) {
    memstatusOff = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
    installPageCache();
    walBufferInstalled = installWALBuffer();
}

int sessiond_sqlite_configured(void) { return memstatusOff && installed && walBufferInstalled; }

// MARK: - Syncing the database and its WAL

/// Syncs one of the connection's files, named by the file control that finds SQLite's handle of it.
static int syncFile(void *db, int pointerOpcode) {
    if (db == NULL) return SQLITE_MISUSE;
    sqlite3_file *file = NULL;
    int rc = sqlite3_file_control(db, "main", pointerOpcode, &file);
    if (rc != SQLITE_OK) return rc;
    if (file == NULL || file->pMethods == NULL) return SQLITE_MISUSE;
    return file->pMethods->xSync(file, SQLITE_SYNC_NORMAL);
}

/// Through SQLite's own file handles rather than descriptors of our own: closing a second descriptor of a
/// file would drop every POSIX lock that SQLite holds on it in this process.
int sessiond_sync_database_and_wal(void *db) {
    int rc = syncFile(db, SQLITE_FCNTL_FILE_POINTER);
    return rc == SQLITE_OK ? syncFile(db, SQLITE_FCNTL_JOURNAL_POINTER) : rc;
}

// MARK: - The WAL's length after each commit

static int storeFrames(void *counter, sqlite3 *db, const char *name, int frames) {
    (void)db;
    (void)name;
    *(int *)counter = frames;
    return SQLITE_OK;
}

void sessiond_count_wal_frames(void *db, int *counter) {
    if (db == NULL) return;
    if (counter == NULL) sqlite3_wal_hook(db, NULL, NULL);
    else sqlite3_wal_hook(db, storeFrames, counter);
}

// MARK: - For tests: one cache driven directly

void *sessiond_page_cache_test_create(void) {
    // Not purgeable: no page is recycled behind the test's back.
    return installed ? cacheCreate(4096, 0, 0) : NULL;
}

int sessiond_page_cache_test_fetch(void *cache, unsigned key, int create) {
    sqlite3_pcache_page *page = cacheFetch(cache, key, create ? 2 : 0);
    if (page == NULL) return 0;
    cacheUnpin(cache, page, 0);
    return 1;
}

void sessiond_page_cache_test_rekey(void *cache, unsigned oldKey, unsigned newKey) {
    // SQLite holds the page it moves, and does not look it up again: neither does this.
    sqlite3_pcache_page *page = base.xFetch(((Cache *)cache)->base, oldKey, 0);
    if (page == NULL) return;
    cacheRekey(cache, page, oldKey, newKey);
    cacheUnpin(cache, page, 0);
}

void sessiond_page_cache_test_truncate(void *cache, unsigned limit) { cacheTruncate(cache, limit); }
unsigned sessiond_page_cache_test_forwarded(void *cache) { return ((Cache *)cache)->forwarded; }
void sessiond_page_cache_test_destroy(void *cache) { cacheDestroy(cache); }
