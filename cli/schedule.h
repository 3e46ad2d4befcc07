/* schedule.h — `tierq schedule add|list|show|enable|disable|remove|fire-now` (issue 11): the rows of
 * tierq.schedules (sql/013) written and read from the command line. Everything here can also be done
 * with plain SQL; the command checks the cron expression and time zone before writing (the database
 * cannot parse cron), and prints next fire times in the schedule's zone.
 *
 * Exit status: 0, 1 (database, or fire-now's source failed), 2 (usage, or a value refused). */
#ifndef TQ_SCHEDULE_H
#define TQ_SCHEDULE_H

#include <stdio.h>

extern const char SCHEDULE_USAGE[];

/* argv after "schedule". Blocks on the database. */
int schedule_main(int argc, char **argv);

/* "2026-12-01 02:00:00 +01:00 (01:00:00 UTC)" for instant t in zone tz into out; the UTC part only
 * when the zone is not UTC. Falls back to UTC alone when the zone cannot be read. */
void schedule_format_time(long long t, const char *tz, char *out, size_t cap);

#endif
