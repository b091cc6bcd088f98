package identity

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The fuzz targets check the properties the blind index relies on: no
// panic, a well-formed normalised value, idempotence, and no echo of the
// input in errors. Run one with, for example,
//
//	go test -run '^$' -fuzz FuzzParsePersonalNumber -fuzztime 10s ./identity/

// fuzzEpoch and fuzzSpan bound the clock of FuzzParsePersonalNumber to the
// years 1900–2299, so that the fuzzer explores century rules rather than
// clocks nobody will pass.
const (
	fuzzEpoch = -2208988800 // 1900-01-01T00:00:00Z
	fuzzSpan  = 400 * 365 * 24 * 60 * 60
)

func FuzzParsePersonalNumber(f *testing.F) {
	now := testNow().Unix()
	for _, s := range []string{
		"19121212-1212", "191212121212", "121212-1212", "121212+1212", "1212121212",
		"20080903-2386", "811218-9876", "19121272-1231", "000229-1214", "000229+1214",
		"20000229-1214", "19000229-1214", "260316-0012", "20260316-0012", "19121212+1212",
		"19121212-1213", "12121-21212", "", " ", "-", "+", "abcdefghij", "19121312-1212",
		"991231-0000", "17991231-0011", "19120091-1212", "   121212-1212   ",
		"261223+9232", "19261223+9232", "19261223-9232", "20150916-0006", "191500722390",
		"191711602399", "191900602391", "\u00a019261223-9232\u200b", "189001019802",
	} {
		f.Add(s, now)
	}
	f.Add("500101-1234", time.Date(2050, time.January, 1, 0, 0, 0, 0, time.UTC).Unix())
	f.Add("000229-1214", time.Date(2000, time.February, 28, 0, 0, 0, 0, time.UTC).Unix())

	f.Fuzz(func(t *testing.T, s string, unix int64) {
		unix = fuzzEpoch + ((unix%fuzzSpan)+fuzzSpan)%fuzzSpan
		now := time.Unix(unix, 0).UTC()

		p, err := ParsePersonalNumber(s, now)
		if err != nil {
			if !errors.Is(err, ErrInvalidPersonalNumber) {
				t.Fatalf("error does not wrap ErrInvalidPersonalNumber: %v", err)
			}
			checkNoEcho(t, err, s)
			if p != (PersonalNumber{}) {
				t.Fatal("non-zero value returned with an error")
			}
			return
		}

		n := p.Normalised()
		if len(n) != 12 || strings.Trim(n, "0123456789") != "" {
			t.Fatalf("Normalised() = %q, want 12 digits", n)
		}
		if b, known := p.BirthDate(); known && b.After(now) {
			t.Fatalf("birth date %v after now %v", b, now)
		}
		if y := p.BirthYear(); y > now.Year()+1 || y < now.Year()-maxAge-1 {
			t.Fatalf("birth year %d implausible at %v", y, now)
		}
		again, err := ParsePersonalNumber(n, now)
		if err != nil {
			t.Fatalf("Normalised() %q does not parse: %v", n, err)
		}
		if again != p {
			t.Fatalf("Normalised() %q parses to a different value", n)
		}
	})
}

func FuzzNormalisePhone(f *testing.F) {
	for _, s := range []string{
		"070-123 45 67", "0701234567", "08-123 456 78", "031-12 34 56", "(08) 123 456 78",
		"+46 70 123 45 67", "0046701234567", "+46 (0)70 123 45 67", "+46 070 123 45 67",
		"+47 912 34 567", "+1 (212) 555-0100", "+44 (0)20 7946 0000", "+683 4002",
		"070\u00a0123\u00a045\u00a067", "070\u2013123 45 67", "070.123.45.67",
		"", "+", "00", "()", "((08))", "+46 (0)(70)", "112", "70 123 45 67",
		"+0 123", "+4670 (0)123 45 67", "070-ABC 45 67", "++46", "+46 () 70",
		"+123 456 789 012 345 6", "000 46 70 123 45 67",
		"070/123 45 67", "(+46) 70 123 45 67", "46701234567", "070-123 45 6",
		"+999 123 456 789", "+47 1234", "+39 (0)6 1234 5678", "08-123 456 78#12",
		"tel:+46701234567", "0701234567;ext=1",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalisePhone(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPhone) {
				t.Fatalf("error does not wrap ErrInvalidPhone: %v", err)
			}
			checkNoEcho(t, err, s)
			if got != "" {
				t.Fatal("non-empty result returned with an error")
			}
			return
		}

		// E.164: a '+' and at most 15 digits, the first not 0.
		if len(got) < 2 || len(got) > 16 || got[0] != '+' ||
			strings.Trim(got[1:], "0123456789") != "" || got[1] == '0' {
			t.Fatalf("NormalisePhone() = %q, not E.164", got)
		}
		again, err := NormalisePhone(got)
		if err != nil {
			t.Fatalf("output %q does not normalise: %v", got, err)
		}
		if again != got {
			t.Fatalf("not idempotent: %q, then %q", got, again)
		}
	})
}

func FuzzNormaliseEmail(f *testing.F) {
	for _, s := range []string{
		"anna.svensson@example.se", "Anna.Svensson@Example.SE", " anna@example.se ",
		"anna+kontakt@example.se", "o'brien@example.ie", "!#$%&'*+-/=?^_`{|}~@example.se",
		"info@xn--rksmrgs-5wao1o.se", "Anna <anna@example.se>", `"Anna"<anna@example.se>`,
		"<anna@example.se>", "anna@example.se(Anna)", `"anna"@example.se`, "anna@[192.168.0.1]",
		"anna@192.168.0.1", "anna@localhost", "anna..svensson@example.se", "anna@example.se.",
		"åsa@example.se", "anna@-example.se", "", "@", "a@b", "a@b.c", "=?utf-8?q?x?=@example.se",
		"anna@example.se,bo@example.se", "group: anna@example.se;",
		"anna@räksmörgås.se", "info@brf-åkern.se", "anna@ÖREBRO.SE", "Anna Svensson <anna@example.se>",
		"anna@o\u0308rebro.se", "anna@xn--abc.se", "anna@ab--cd.se", "anna@ｅｘａｍｐｌｅ.se",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormaliseEmail(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("error does not wrap ErrInvalidEmail: %v", err)
			}
			if strings.Contains(s, "@") {
				checkNoEcho(t, err, s)
			}
			if got != "" {
				t.Fatal("non-empty result returned with an error")
			}
			return
		}

		if len(got) > maxEmailLength || strings.Count(got, "@") != 1 || got != strings.ToLower(got) {
			t.Fatalf("NormaliseEmail() = %q is not a normalised address", got)
		}
		again, err := NormaliseEmail(got)
		if err != nil {
			t.Fatalf("output %q does not normalise: %v", got, err)
		}
		if again != got {
			t.Fatalf("not idempotent: %q, then %q", got, again)
		}
		// The stored form must find the same blind-index token.
		e, err := ParseEmail(s)
		if err != nil {
			t.Fatalf("ParseEmail refuses what NormaliseEmail took: %v", err)
		}
		stored, err := ParseEmail(e.Address())
		if err != nil {
			t.Fatalf("stored form %q does not parse: %v", e.Address(), err)
		}
		if stored.Normalised() != got || stored.Address() != e.Address() {
			t.Fatalf("stored form %q reads as %q, %q; want %q", e.Address(), stored.Address(), stored.Normalised(), got)
		}
	})
}

// checkNoEcho fails if err repeats an input of six or more characters. The
// reasons are fixed English phrases without digits, '+' or '@', so the
// only inputs they can contain by coincidence are plain words such as
// "number" or "digits", which carry no personal data; those are allowed.
func checkNoEcho(t *testing.T, err error, in string) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "0123456789+@") {
		t.Fatalf("error text %q contains a digit, '+' or '@'", msg)
	}
	if len(in) >= 6 && strings.Contains(msg, in) && strings.ContainsAny(in, "0123456789+@") {
		t.Fatalf("error text %q echoes the input", msg)
	}
}
