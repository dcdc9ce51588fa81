# Quiet hours: no marketing while the recipient is likely asleep (by default
# 21:00 to 08:00 in the recipient's time zone). A wait, not a refusal: retry
# once the quiet range ends. Utility and authentication templates are exempt.
package sendgate.quiet_hours

import data.sendgate.lib

params := data.sendgate.params.quiet_hours

minutes_per_day := 1440

minute_of_day(t) := (t.hour * 60) + t.minute

start := minute_of_day(params.start)

end := minute_of_day(params.end)

local_time := input.recipient.local_time if is_object(input.recipient.local_time)

now_minute := minute_of_day(local_time)

# [start, end): start inclusive, end exclusive; wraps midnight when start > end.
# start == end means no quiet hours.
quiet if {
	start < end
	now_minute >= start
	now_minute < end
}

quiet if {
	start > end
	now_minute >= start
}

quiet if {
	start > end
	now_minute < end
}

# Seconds until the quiet range ends, to the minute.
retry_after := (((end - now_minute) + minutes_per_day) % minutes_per_day) * 60

defer contains reason if {
	lib.marketing
	quiet
	reason := {
		"rule": "quiet_hours",
		"message": sprintf(
			"marketing template to %s at %s local time (%v), inside quiet hours %s to %s; retry in %s",
			[
				lib.recipient_label, lib.clock(local_time), input.recipient.timezone,
				lib.clock(params.start), lib.clock(params.end), lib.duration(retry_after),
			],
		),
		"local_time": lib.clock(local_time),
		"timezone": input.recipient.timezone,
		"start": lib.clock(params.start),
		"end": lib.clock(params.end),
		"retry_after": retry_after,
	}
}

warn contains reason if {
	lib.marketing
	not local_time
	reason := {
		"rule": "quiet_hours.unknown_timezone",
		"message": sprintf(
			"the local time of %s is unknown (no time zone for this number), so quiet hours %s to %s were not checked",
			[lib.recipient_label, lib.clock(params.start), lib.clock(params.end)],
		),
	}
}
