// Package reqlog carries what identifies one request, its id and the
// caller's subject, in the request's context, and writes both on every
// log line logged with that context (Handler). The server starts a
// request once, where it enters (pkg/server: the HTTP handler of the API
// port and the first gRPC interceptor), and the authentication step names
// the caller (SetSubject), so no handler adds these attributes itself and
// an operator can follow one request through every line it caused.
package reqlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync/atomic"
)

// The attribute keys Handler adds.
const (
	KeyRequestID = "request_id"
	KeySubject   = "subject"
)

// Header is the request and response header (gRPC metadata key in lower
// case) that carries the request id.
const Header = "X-Request-Id"

// request is one request's identity. The subject is set after the request
// starts (authentication runs inside the logging layer), so it is held
// behind a pointer every copy of the context shares.
type request struct {
	id      string
	subject atomic.Pointer[string]
}

type ctxKey struct{}

// Start returns ctx carrying a new request with id. The id must come from
// FromHeader or NewID.
func Start(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, &request{id: id})
}

func from(ctx context.Context) *request {
	if ctx == nil {
		return nil
	}
	r, _ := ctx.Value(ctxKey{}).(*request)
	return r
}

// ID returns the id of the request ctx belongs to, or "" outside a request.
func ID(ctx context.Context) string {
	if r := from(ctx); r != nil {
		return r.id
	}
	return ""
}

// SetSubject names the authenticated caller of the request ctx belongs
// to: the token's subject, an opaque id of the agent or e-service client
// (auth.Principal.Subject), never a name or an address. Outside a request
// it does nothing.
func SetSubject(ctx context.Context, subject string) {
	if r := from(ctx); r != nil && subject != "" {
		r.subject.Store(&subject)
	}
}

// Subject returns the caller SetSubject named, or "".
func Subject(ctx context.Context) string {
	if r := from(ctx); r != nil {
		if s := r.subject.Load(); s != nil {
			return *s
		}
	}
	return ""
}

// Bounds of an id a client may choose.
const (
	minIDLen = 16
	maxIDLen = 64
)

// FromHeader returns the client's request id when it is safe to log, and
// a new one otherwise. Safe means 16 to 64 hexadecimal digits and hyphens:
// the ids proxies and tracing systems make (UUIDs, nginx's $request_id,
// W3C trace ids) are of that form, and no name, e-mail address, phone or
// identity number is, so a client cannot put personal data into the log
// through it, nor forge lines with control characters.
func FromHeader(v string) string {
	if ValidID(v) {
		return v
	}
	return NewID()
}

// ValidID reports whether v is a request id FromHeader keeps.
func ValidID(v string) bool {
	if len(v) < minIDLen || len(v) > maxIDLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

// NewID returns a random request id: 128 bits as 32 hexadecimal digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Handler wraps h so that every record logged with a request's context
// carries request_id and, once known, subject. A record that already has
// one of the keys (or a logger made With it) keeps its own, so no line
// holds a key twice. Attributes added under an open group (WithGroup) go
// into that group, as slog does for every attribute; kontakt's loggers
// open none.
func Handler(h slog.Handler) slog.Handler {
	if _, ok := h.(*handler); ok {
		return h
	}
	return &handler{inner: h}
}

type handler struct {
	inner slog.Handler
	// hasID and hasSubject say that WithAttrs already added the key at
	// the top level.
	hasID, hasSubject bool
	grouped           bool
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	r := from(ctx)
	if r == nil {
		return h.inner.Handle(ctx, rec)
	}
	addID, addSubject := !h.hasID, !h.hasSubject
	subject := ""
	if s := r.subject.Load(); s != nil {
		subject = *s
	} else {
		addSubject = false
	}
	if !addID && !addSubject {
		return h.inner.Handle(ctx, rec)
	}
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case KeyRequestID:
			addID = false
		case KeySubject:
			addSubject = false
		}
		return addID || addSubject
	})
	if addID || addSubject {
		rec = rec.Clone()
		if addID {
			rec.AddAttrs(slog.String(KeyRequestID, r.id))
		}
		if addSubject {
			rec.AddAttrs(slog.String(KeySubject, subject))
		}
	}
	return h.inner.Handle(ctx, rec)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	if !h.grouped {
		for _, a := range as {
			switch a.Key {
			case KeyRequestID:
				c.hasID = true
			case KeySubject:
				c.hasSubject = true
			}
		}
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.inner = h.inner.WithGroup(name)
	c.grouped = true
	return &c
}
