#include <sqlite3.h>
#include <stdlib.h>
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

// MARK: - Applied when the binary loads

/// Whether the memory statistics are off.
static int memstatusOff;

/// Runs before `main` and before any static initializer of Swift code, so before anything can open a
/// connection: `sqlite3_config` only works before SQLite initializes, and a test runner or a tool that
/// opened SQLite first would otherwise keep the defaults.
__attribute__((constructor)) static void configureSQLite(void) {
    memstatusOff = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
    installPageCache();
}

int sessiond_sqlite_configured(void) { return memstatusOff && installed; }

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
