package backoff

import "time"

// UnknownOutcome is for a write whose outcome is unknown (a time-out, NATS
// electing a leader) and that is safe to send again because the store
// recognises a repeat (an event id, a message id): three attempts in all,
// a moment apart, so that a short election is ridden out inside one
// request.
var UnknownOutcome = Policy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Attempts: 3}
