# Quiet hours: no marketing while the recipient is likely asleep (by default
# 21:00 to 08:00 in the recipient's time zone). A wait, not a refusal: retry
# once the quiet range ends. Utility and authentication templates are exempt.
package sendgate.quiet_hours

import data.sendgate.lib

params := data.sendgate.params.quiet_hours

minutes_per_day := 1440

minute_of_day(t) := (t.hour * 60) + t.minute

end := minute_of_day(params.end)

local_time := input.recipient.local_time if is_object(input.recipient.local_time)

now_minute := minute_of_day(local_time)

# Seconds until the quiet range ends, to the minute.
retry_after := (((end - now_minute) + minutes_per_day) % minutes_per_day) * 60

defer contains reason if {
	data.sendgate.lib.marketing
	t := input.recipient.local_time
	is_object(t)

	# Quiet range [start, end): start inclusive, end exclusive; it wraps midnight
	# when start > end, and start == end means no quiet hours. That is: fewer
	# minutes have passed since the range started than the range is long (both
	# modulo a day).
	q := data.sendgate.params.quiet_hours
	range_start := (q.start.hour * 60) + q.start.minute
	since_start := ((((t.hour * 60) + t.minute) - range_start) + 1440) % 1440
	since_start < ((((q.end.hour * 60) + q.end.minute) - range_start) + 1440) % 1440
	reason := {
		"rule": "quiet_hours",
		"message": sprintf(
			"marketing template to %s at %s local time (%v), inside quiet hours %s to %s; retry in %s",
			[
				data.sendgate.lib.recipient_label, lib.clock(local_time), input.recipient.timezone,
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
	data.sendgate.lib.marketing
	not is_object(object.get(input, ["recipient", "local_time"], null))
	reason := {
		"rule": "quiet_hours.unknown_timezone",
		"message": sprintf(
			"the local time of %s is unknown (no time zone for this number), so quiet hours %s to %s were not checked",
			[data.sendgate.lib.recipient_label, lib.clock(params.start), lib.clock(params.end)],
		),
	}
}
