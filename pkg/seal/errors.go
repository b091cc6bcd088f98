package seal

import "errors"

// Sentinel errors. Callers test for them with errors.Is; the package wraps
// them with context (the key id, never the data or key material).
var (
	// ErrKeyDestroyed means the data key was destroyed (the class was
	// redacted or the case deleted): the data is gone for good, and no new
	// data can be sealed for that class of that case.
	ErrKeyDestroyed = errors.New("seal: data key destroyed")
	// ErrKeyNotFound means no data key was ever created for the key id, so
	// nothing can have been sealed with it.
	ErrKeyNotFound = errors.New("seal: data key not found")
	// ErrKeyExists is returned by KeyStore.Create when the key id already
	// has a key; Sealer then uses the existing one.
	ErrKeyExists = errors.New("seal: data key already exists")
	// ErrTampered means a sealed value (or a wrapped key) failed
	// authentication or is malformed: it was altered, truncated, or moved
	// to another case or class.
	ErrTampered = errors.New("seal: authentication failed")
	// ErrWrongMasterKey means a data key was wrapped with another master key
	// than the one this process has: a configuration error, not tampering.
	ErrWrongMasterKey = errors.New("seal: data key was wrapped with a different master key")
	// ErrNoMasterKey means production mode found no master key to load.
	ErrNoMasterKey = errors.New("no master key: set KONTAKT_MASTER_KEY or master_key_file")
	// ErrInvalidMasterKey means a master key was found but is unusable (bad
	// encoding, wrong length, or a file others can read).
	ErrInvalidMasterKey = errors.New("seal: invalid master key")
	// ErrInvalidCaseID means a case id is not a random id of the accepted
	// forms.
	ErrInvalidCaseID = errors.New("seal: invalid case id")
	// ErrInvalidClass means a data class is not one of the defined classes.
	ErrInvalidClass = errors.New("seal: invalid data class")
	// ErrInvalidKeyID means a key id is not of the form KeyID produces.
	ErrInvalidKeyID = errors.New("seal: invalid key id")
)
