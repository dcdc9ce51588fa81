# Helpers shared by the concern packages: what kind of send this is, and how to
# show numbers to a human. Reads only `input` (docs/input.md); no tunables here.
package sendgate.lib

# A read receipt or typing indicator: only account rules apply to it.
is_status if input.message.is_status == true

# Sealed for Meta (POST .../messages_encrypted): the gateway cannot read the content.
encrypted if input.endpoint == "messages_encrypted"

encrypted if input.message.type == "encrypted"

is_template if input.message.type == "template"

# A message the app composed itself (anything but a template or a status call);
# it may only go out inside the customer service window.
free_form if {
	is_string(input.message.type)
	not is_status
	not is_template
}

# The template's category, upper-cased (MARKETING | UTILITY | AUTHENTICATION).
# The marketing_messages endpoint only carries marketing, whatever the catalog says.
template_category := "MARKETING" if {
	input.endpoint == "marketing_messages"
} else := upper(input.template.category) if {
	is_template
	is_string(input.template.category)
}

marketing if template_category == "MARKETING"

# The category as reviewers read it ("marketing"), or "unknown" when not in the catalog.
category_label := lower(template_category)

default category_label := "unknown"

# Who the message goes to, for messages.
recipient_label := input.recipient.id if {
	is_string(input.recipient.id)
} else := input.message.recipient if {
	is_string(input.message.recipient)
} else := "(unknown recipient)"

# A number of seconds for humans: "6s", "9h 55m", "25h 3m 20s", "7d"; days only
# from 48 hours on, so a day reads "24h"; zero parts left out; "0s" for nothing.
duration(seconds) := "0s" if {
	floor(seconds) <= 0
} else := concat(" ", parts) if {
	total := floor(seconds)
	days := day_count(total)
	hours := floor((total - (days * 86400)) / 3600)
	minutes := floor(((total - (days * 86400)) - (hours * 3600)) / 60)
	secs := ((total - (days * 86400)) - (hours * 3600)) - (minutes * 60)
	parts := [sprintf("%d%s", [value, unit]) |
		some pair in [[days, "d"], [hours, "h"], [minutes, "m"], [secs, "s"]]
		[value, unit] := pair
		value > 0
	]
}

day_count(total) := floor(total / 86400) if total >= 172800

else := 0

# x when it is an array, else []. Iterating over null is an error on regorus
# (OPA makes it undefined), and absent facts are null: iterate over items(x).
items(x) := x if {
	is_array(x)
} else := []

# Seconds rounded to the millisecond, for display: float (regorus) and decimal
# (OPA) arithmetic agree on that much, not on the 15th digit.
ms(seconds) := round(seconds * 1000) / 1000

# {"hour": 7, "minute": 5} as "07:05".
clock(t) := sprintf("%02d:%02d", [t.hour, t.minute])
