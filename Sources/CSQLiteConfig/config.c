#include <sqlite3.h>
#include "CSQLiteConfig.h"

int sessiond_sqlite_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
