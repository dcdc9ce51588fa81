# The same content to many people at once ("do not send the same message to a
# large number of users in a short period", Meta's Business Messaging Policy):
# one normalized content (a template's name, language and parameter texts, or
# a message's texts and media) from one number to more distinct recipients
# than the threshold in a moving window is paced: deferred until a place frees
# up. The thresholds are data (params.pacing.same_content: per category,
# marketing only by default; higher for a campaign the compliance team vetted;
# lower for a marketing template whose quality is not green). The gateway
# reads them before deciding, counts the distinct recipients exactly (across
# every gateway sharing Redis) and gives the count as
# input.account.same_content (null when the content is not paced).
package sendgate.pacing

defer contains reason if {
	input.account.same_content.admitted == false
	not input.message.is_status == true
	input.endpoint != "messages_encrypted"
	input.message.type != "encrypted"
	c := input.account.same_content
	reason := {
		"rule": "pacing.same_content",
		"message": sprintf(
			"the same %s content (%s) already went to %d recipient(s) from phone number id %v in the last %d s; the %s threshold is %d: retry in %d ms",
			[lower(c.category), c.hash, c.count, input.account.phone_number_id, floor(c.window_seconds), c.threshold, c.limit, c.retry_after_ms],
		),
		"hash": c.hash,
		"category": c.category,
		"threshold": c.threshold,
		"limit": c.limit,
		"count": c.count,
		"window_seconds": c.window_seconds,
		"retry_after": c.retry_after,
		"retry_after_ms": c.retry_after_ms,
	}
}
