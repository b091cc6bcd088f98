package domain

// Message is one record version in the form the statistics stream carries
// it. The projector keeps the messages of its last batch in the read
// model (the outbox) until they are published, so they are encoded once,
// at projection, and a re-publish after a crash sends the very same bytes.
type Message struct {
	// Subject is the stream subject, which names the case type.
	Subject string
	// MsgID is "<statistics id>-<version>", JetStream's de-duplication key.
	MsgID string
	// Version is the record version the message carries.
	Version int64
	// Data is the record as JSON.
	Data []byte
}
