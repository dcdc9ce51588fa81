# Helpers shared by the concern packages: what kind of send this is, and how to
# show numbers to a human. Reads only `input` (docs/input.md); no tunables here.
#
# Other packages reach the rules here by their full path (data.sendgate.lib.marketing),
# not through `import data.sendgate.lib`: regorus evaluates every rule of a
# package reached through an import alias, which costs tens of microseconds per
# message. Calling a function through the alias (lib.duration(s)) is fine.
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
# A Direct Send message has the category it was sent with.
template_category := "MARKETING" if {
	input.endpoint == "marketing_messages"
} else := upper(input.template.category) if {
	input.message.type == "template"
	is_string(input.template.category)
} else := upper(input.message.category) if {
	is_string(input.message.category)
}

# Direct Send (Meta: direct-send/send-utility-and-authentication-messages): a free-form text or
# interactive message with a top-level category ("utility" | "authentication"; the gateway
# refuses other values and types), from an account Meta enabled it for (accounts[].direct_send).
# It is a business-initiated message of its category, outside the window too: the rules of a
# template of that category apply to it, not window.closed.
direct_send if {
	is_string(input.message.category)
	input.account.direct_send == true
}

# A message the business starts (Meta's business-initiated): a template, or Direct Send.
business_initiated if input.message.type == "template"

business_initiated if direct_send

# template_category == "MARKETING", spelled out: main and three packages ask on
# every template, so it is worth a cheaper rule.
marketing if input.endpoint == "marketing_messages"

marketing if {
	input.message.type == "template"
	is_string(input.template.category)
	upper(input.template.category) == "MARKETING"
}

# The category as reviewers read it ("marketing"), or "unknown" when not in the catalog.
default category_label := "unknown"

category_label := lower(template_category)

# Who the message goes to, for messages.
default recipient_label := "(unknown recipient)"

recipient_label := input.recipient.id if {
	is_string(input.recipient.id)
} else := input.message.recipient if {
	is_string(input.message.recipient)
}

# A number of seconds for humans: "6s", "9h 55m", "25h 3m 20s", "7d"; days only
# from 48 hours on, so a day reads "24h"; zero parts left out; "0s" for nothing.
# (One sprintf with every part, then the zero parts cut out: " 0h" cannot occur
# inside another part, as " 10h" has a digit before the 0.)
duration(seconds) := "0s" if {
	floor(seconds) <= 0
} else := trim_left(strings.replace_n({" 0d": "", " 0h": "", " 0m": "", " 0s": ""}, text), " ") if {
	total := floor(seconds)
	days := day_count(total)
	hours := floor((total - (days * 86400)) / 3600)
	minutes := floor(((total - (days * 86400)) - (hours * 3600)) / 60)
	secs := ((total - (days * 86400)) - (hours * 3600)) - (minutes * 60)
	text := sprintf(" %dd %dh %dm %ds", [days, hours, minutes, secs])
}

day_count(total) := floor(total / 86400) if total >= 172800

else := 0

# x when it is an array, else []. Iterating over null is an error on regorus
# (OPA makes it undefined), and absent facts are null: iterate over items(x)
# where a fact may be null (the gateway's lists are always lists).
#
# Likewise for negation: in OPA, `not is_number(input.a.b)` is undefined, not
# true, when input.a.b is undefined (input.a null or without b), while regorus
# makes it true. Read such a fact with object.get(input, ["a", "b"], null)
# before negating a builtin over it.
items(x) := x if {
	is_array(x)
} else := []

# Numbers in reasons: whole seconds, written with %d. regorus computes in binary
# floats and OPA in decimal, so a difference of two times can end in ...4999 in one
# and ...5000 in the other: rounded to the millisecond they may differ, floored to
# the second they agree (tests/test_differential.py). And sprintf's %v writes a
# large fraction as 1.8651206555816185e+09 in OPA but 1865120655.5816185 in regorus.
# Negative (a clock behind the facts) counts as 0: OPA v1.4 floors -0.5 to 0 and
# ceils it to 1, regorus to -1 and -0 (tests/test_differential.py).
whole_seconds(seconds) := floor(max([seconds, 0]))

# The characters (Unicode code points) in a string, as Meta and OPA count them: regorus's
# count() of a string counts UTF-16 units, two for an emoji. That count is never below this
# one, so a rule tests `count(s) > limit` first (cheap) and this only past it.
characters(s) := count(split(s, ""))

# {"hour": 7, "minute": 5} as "07:05".
clock(t) := sprintf("%02d:%02d", [t.hour, t.minute])
