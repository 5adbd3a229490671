#ifndef CSQLITECONFIG_H
#define CSQLITECONFIG_H

/// Turns off SQLite's memory statistics for the whole process (SQLITE_CONFIG_MEMSTATUS = 0), so that its
/// allocations no longer take a global mutex each. `sqlite3_config` is variadic, which Swift cannot call.
/// Effective only before SQLite initializes (before the first connection opens); returns SQLite's result
/// code, SQLITE_MISUSE when it is too late.
int sessiond_sqlite_disable_memstatus(void);

#endif
