package server

import (
	"context"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A google.rpc.BadRequest names each wrong field by its path. The field
// paths are written in the proto names (case.contact.postal_address), and
// error_details.proto says that "in JSON, the same values are represented"
// in the JSON names (case.contact.postalAddress): what a client that
// speaks JSON (REST, Connect JSON, gRPC-web JSON) has in its hands. The
// edge marks such a request, and the error mapping rewrites the paths of
// its answer, so that a form can put each message next to its field by
// the name it sent.

// jsonClientKey marks a request context whose client speaks JSON.
type jsonClientKey struct{}

// markJSONClient notes on r's context that the client speaks JSON.
func (s *Server) markJSONClient(r *http.Request) *http.Request {
	if !s.speaksJSON(r) {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), jsonClientKey{}, true))
}

// speaksJSON reports a request in the JSON codec: REST, and an RPC
// protocol whose content type (or, for a Connect GET, whose encoding
// parameter) says json.
func (s *Server) speaksJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json", "application/connect+json", "application/grpc-web+json", "application/grpc+json":
		return true
	}
	if s.rpcMethod(r.URL.Path) == "" {
		return true // REST
	}
	return r.Method == http.MethodGet && r.URL.Query().Get("encoding") == "json"
}

// withJSONFieldPaths rewrites the BadRequest field paths of err into JSON
// names when ctx's client speaks JSON; method ("/svc/Method") gives the
// request message the paths start from.
func withJSONFieldPaths(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if json, _ := ctx.Value(jsonClientKey{}).(bool); !json {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	md := inputOf(method)
	p := st.Proto()
	changed := false
	for _, d := range p.GetDetails() {
		br := &errdetails.BadRequest{}
		if !d.MessageIs(br) || d.UnmarshalTo(br) != nil {
			continue
		}
		renamed := false
		for _, v := range br.GetFieldViolations() {
			if jp := JSONFieldPath(md, v.GetField()); jp != v.GetField() {
				v.Field, renamed = jp, true
			}
		}
		if renamed && d.MarshalFrom(br) == nil {
			changed = true
		}
	}
	if !changed {
		return err
	}
	return status.FromProto(p).Err()
}

// inputOf is the request message of method ("/svc/Method"), or nil.
func inputOf(method string) protoreflect.MessageDescriptor {
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	if m := sd.Methods().ByName(protoreflect.Name(name)); m != nil {
		return m.Input()
	}
	return nil
}

// JSONFieldPath writes a field path of proto names ("case.contact.
// postal_address", "case.attachments[0].content_type", map keys as
// ["key"]) in the JSON names of the fields it passes through, starting
// at md. A name md does not know (a oneof, a path past the message) is
// converted as protoc derives a JSON name: each "_x" becomes "X".
func JSONFieldPath(md protoreflect.MessageDescriptor, path string) string {
	var b strings.Builder
	rest := path
	for rest != "" {
		end := strings.IndexAny(rest, ".[")
		if end < 0 {
			end = len(rest)
		}
		name := rest[:end]
		rest = rest[end:]
		var fd protoreflect.FieldDescriptor
		if md != nil {
			fd = md.Fields().ByName(protoreflect.Name(name))
		}
		if fd != nil {
			b.WriteString(fd.JSONName())
			md = fd.Message()
			if fd.IsMap() {
				md = fd.MapValue().Message()
			}
		} else {
			b.WriteString(jsonCamelCase(name))
			md = nil
		}
		// Subscripts: [0], ["key"], [true].
		for strings.HasPrefix(rest, "[") {
			if q, err := strconv.QuotedPrefix(rest[1:]); err == nil && strings.HasPrefix(rest[1+len(q):], "]") {
				b.WriteString(rest[:len(q)+2])
				rest = rest[len(q)+2:]
				continue
			}
			close := strings.IndexByte(rest, ']')
			if close < 0 {
				b.WriteString(rest)
				return b.String()
			}
			b.WriteString(rest[:close+1])
			rest = rest[close+1:]
		}
		if strings.HasPrefix(rest, ".") {
			b.WriteByte('.')
			rest = rest[1:]
		}
	}
	return b.String()
}

// jsonCamelCase is protoc's JSON name of a field name.
func jsonCamelCase(s string) string {
	var b strings.Builder
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_':
			upper = true
		case upper && 'a' <= c && c <= 'z':
			b.WriteByte(c - 'a' + 'A')
			upper = false
		default:
			b.WriteByte(c)
			upper = false
		}
	}
	return b.String()
}
