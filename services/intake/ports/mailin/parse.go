package mailin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/emersion/go-message"
	// Registers the character sets beyond UTF-8 and US-ASCII that mail
	// from Swedish citizens arrives in (ISO-8859-1, Windows-1252, …), for
	// bodies and RFC 2047 subjects alike.
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/net/html"

	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// errUnreadable means the message is not MIME that can be read at all.
var errUnreadable = errors.New("message cannot be read")

// parse reads a whole message into what intake needs: the headers that
// tell a person's mail from a program's, the From address, the decoded
// subject and the text. A text/plain part is preferred; an HTML-only
// mail is converted to text. Every other part is a file (an
// attachment, or an inline image), read into memory with its name and
// media type; the content is sealed before it leaves the process. A part in a
// character set the library does not know is read as it stands rather
// than losing the mail.
func parse(raw []byte) (domain.Mail, error) {
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return domain.Mail{}, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	h := mail.Header{Header: ent.Header}
	var m domain.Mail
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		m.From = from[0].Address
	}
	if subject, err := h.Subject(); err == nil {
		m.Subject = subject
	} else {
		m.Subject = h.Get("Subject")
	}
	if id, err := h.MessageID(); err == nil {
		m.MessageID = id
	}
	// The mails a reply follows: kontakt's own Message-IDs among them
	// name the case it answers.
	for _, field := range []string{"In-Reply-To", "References"} {
		if ids, err := h.MsgIDList(field); err == nil {
			m.References = append(m.References, ids...)
		}
	}
	m.AutoSubmitted = strings.ToLower(strings.TrimSpace(firstToken(h.Get("Auto-Submitted"))))
	m.Precedence = strings.ToLower(strings.TrimSpace(h.Get("Precedence")))
	m.AutoReplyHeader = h.Has("X-Autoreply") || h.Has("X-Autorespond")
	m.MailingList = h.Has("List-Id") || h.Has("List-Unsubscribe")

	var plain, htmlText []string
	walkErr := ent.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		mediaType, params, _ := part.Header.ContentType()
		disp, _, _ := part.Header.ContentDisposition()
		file := func(body []byte) {
			ah := mail.AttachmentHeader{Header: part.Header}
			name, _ := ah.Filename()
			m.Attachments = append(m.Attachments, domain.MailAttachment{Name: name, ContentType: mediaType, Content: body})
		}
		switch mediaType {
		case "multipart/report":
			m.Report = true
			m.ReportType = strings.ToLower(params["report-type"])
			return nil
		case "message/delivery-status", "message/global-delivery-status":
			m.Report = true
			actions, err := deliveryActions(part.Body)
			m.DeliveryActions = append(m.DeliveryActions, actions...)
			return err
		case "message/disposition-notification":
			m.Report = true
			return nil
		case "message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers":
			body, err := io.ReadAll(part.Body)
			if err != nil {
				return err
			}
			// A delivery report returns the mail it is about (or its
			// header): its Message-ID names the mail that did not
			// arrive.
			if id := embeddedMessageID(bytes.NewReader(body)); id != "" {
				m.OriginalMessageIDs = append(m.OriginalMessageIDs, id)
			}
			// Outside a report it is a mail the citizen forwards: a file
			// of the case (message/rfc822 is an accepted type).
			if !m.Report {
				file(body)
			}
			return nil
		}
		switch {
		case strings.HasPrefix(mediaType, "multipart/"):
			return nil
		case disp == "attachment" || (mediaType != "text/plain" && mediaType != "text/html"):
			// A file: named or not, inline (a pasted image) or not.
			body, err := io.ReadAll(part.Body)
			if err != nil {
				return err
			}
			file(body)
			return nil
		}
		body, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		if mediaType == "text/plain" {
			plain = append(plain, string(body))
		} else {
			htmlText = append(htmlText, htmlToText(body))
		}
		return nil
	})
	if walkErr != nil {
		return domain.Mail{}, fmt.Errorf("%w: %w", errUnreadable, walkErr)
	}
	if len(m.OriginalMessageIDs) == 0 {
		// A bounce that is not a delivery report (older MTAs write the
		// returned header into the text) quotes the Message-ID there;
		// the domain uses it only for mail from the null sender.
		for _, p := range plain {
			for _, match := range quotedMessageID.FindAllStringSubmatch(p, 4) {
				m.OriginalMessageIDs = append(m.OriginalMessageIDs, match[1])
			}
		}
	}
	if len(plain) > 0 {
		m.Text = strings.Join(plain, "\n\n")
	} else {
		m.Text = strings.Join(htmlText, "\n\n")
	}
	m.Text = strings.ReplaceAll(m.Text, "\r\n", "\n")
	return m, nil
}

// quotedMessageID finds a Message-ID header quoted in a bounce's text.
var quotedMessageID = regexp.MustCompile(`(?im)^[ \t>]*Message-ID:[ \t]*<([^<>\s]+)>`)

// embeddedMessageID reads the Message-ID of a mail (or a header block)
// a delivery report returns, without its angle brackets; empty when it
// has none.
func embeddedMessageID(body io.Reader) string {
	th, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(body, 256<<10)))
	if err != nil && th.Len() == 0 {
		return ""
	}
	h := mail.Header{Header: message.Header{Header: th}}
	id, err := h.MessageID()
	if err != nil {
		return ""
	}
	return id
}

// deliveryActions reads the Action fields of a delivery-status part
// (RFC 3464: "failed", "delayed", "delivered", "relayed", "expanded"),
// in lower case.
func deliveryActions(body io.Reader) ([]string, error) {
	var actions []string
	sc := bufio.NewScanner(io.LimitReader(body, 256<<10))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "Action") {
			actions = append(actions, strings.ToLower(strings.TrimSpace(value)))
		}
	}
	return actions, sc.Err()
}

// firstToken is a structured header's value before its parameters
// ("auto-replied; owner-email=…" is "auto-replied").
func firstToken(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		return v[:i]
	}
	return v
}

// htmlToText extracts the text a person reads from an HTML body: the
// text of the document with a line break for every block element and
// <br>, without scripts, styles and the head. Written on
// golang.org/x/net/html's tokenizer (a maintained HTML5 parser) rather
// than with another dependency, because a case needs the words, not a
// rendering: tables, links and emphasis become plain text.
func htmlToText(b []byte) string {
	z := html.NewTokenizer(bytes.NewReader(b))
	var out strings.Builder
	skip := 0
	newline := func() {
		if s := out.String(); s != "" && !strings.HasSuffix(s, "\n") {
			out.WriteByte('\n')
		}
	}
	for {
		switch z.Next() {
		case html.ErrorToken:
			return tidyLines(out.String())
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				skip++
			case "br":
				out.WriteByte('\n')
			case "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "pre", "hr":
				newline()
			case "td", "th":
				out.WriteByte(' ')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if skip > 0 {
					skip--
				}
			case "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "pre":
				newline()
			}
		case html.TextToken:
			if skip == 0 {
				out.Write(z.Text())
			}
		}
	}
}

// tidyLines collapses the blanks within each line and runs of empty
// lines, which HTML's own whitespace leaves.
func tidyLines(s string) string {
	lines := strings.Split(s, "\n")
	out := make([]string, 0, len(lines))
	empty := false
	for _, l := range lines {
		l = strings.Join(strings.Fields(l), " ")
		if l == "" {
			if !empty && len(out) > 0 {
				out = append(out, "")
			}
			empty = true
			continue
		}
		empty = false
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
