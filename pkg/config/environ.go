package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// envOutsideTheFile are the variables kontakt reads that are no key of the
// configuration file: the file's own path, the master key (a secret that
// belongs in the environment, not in a file beside the data), the token
// the stats command calls with, and the development fault switch the crash
// tests throw.
var envOutsideTheFile = []string{"KONTAKT_CONFIG", "KONTAKT_MASTER_KEY", "KONTAKT_TOKEN", "KONTAKT_DEV_FAULT"}

// toolingEnv are prefixes and suffixes of variables that belong to
// kontakt's Makefile and tests (the binaries they drive, benchmark and
// crash-test sizes), which run `kontakt serve` with them in its
// environment: they are not configuration, so they are not refused.
var (
	toolingPrefixes = []string{"KONTAKT_BENCH_", "KONTAKT_CRASH_", "KONTAKT_E2E_", "KONTAKT_STATS_TEST_", "KONTAKT_BACKUP_BENCH_", "KONTAKT_FUZZ_", "KONTAKT_ESDB_"}
	toolingSuffixes = []string{"_BIN"}
)

// EnvNames returns every KONTAKT_* variable that sets a key of the
// configuration (see Load), sorted: the key's dotted path in upper case
// with dots as underscores. Lists of objects (queues, categories) are set
// in the file only and have no variable.
func EnvNames() []string {
	var names []string
	var walk func(reflect.Type, string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			name := prefix + "_" + strings.ToUpper(tag)
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				walk(f.Type, name)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() != reflect.String:
			default:
				names = append(names, name)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "KONTAKT")
	names = append(names, envOutsideTheFile...)
	slices.Sort(names)
	return names
}

// CheckEnviron refuses a KONTAKT_* variable that kontakt does not know
// (environ as os.Environ gives it). A misspelt variable would otherwise be
// ignored without a word, and the server would start with the default it
// was meant to override (KONTAKT_LISTN binding the default port).
func CheckEnviron(environ []string) error {
	known := EnvNames()
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "KONTAKT_") || isTooling(name) {
			continue
		}
		if _, found := slices.BinarySearch(known, name); !found {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("unknown environment variable %s: no configuration key has that name (the README lists them; a key's variable is KONTAKT_ and its path in upper case, dots as underscores)", strings.Join(unknown, ", "))
}

func isTooling(name string) bool {
	for _, p := range toolingPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, s := range toolingSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}
