package pipeline

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of the event, the contract for
// producers written in other languages. A test keeps it in step with the
// decoder's fields, required list and default limits.
//
//go:embed event.schema.json
var Schema []byte
