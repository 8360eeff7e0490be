package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// DecodeJSON reads the request body as exactly one JSON value into v. It
// answers with specific problems: 415 unless the Content-Type is
// application/json (charset, if given, utf-8) with no Content-Encoding; 413
// past the route's body cap; 400 for an empty or null body, invalid UTF-8,
// a syntax error, an unknown field, a value of the wrong type, or data after
// the value.
func DecodeJSON(r *http.Request, v any) error {
	if err := checkJSONContentType(r.Header); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeJSONBytes(body, v)
}

func checkJSONContentType(h http.Header) error {
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		p := NewProblem(TypeUnsupportedMedia, "Content-Encoding %q is not supported; send the body uncompressed", ce)
		p.Header().Set("Accept-Encoding", "identity")
		return p
	}
	ct := h.Get("Content-Type")
	unsupported := func(detail string) error {
		p := NewProblem(TypeUnsupportedMedia, "%s", detail)
		p.Header().Set("Accept", "application/json")
		return p
	}
	if ct == "" {
		return unsupported("the request has no Content-Type; send application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return unsupported("the Content-Type " + quote(ct) + " cannot be parsed; send application/json")
	}
	if mt != "application/json" {
		return unsupported("the Content-Type is " + quote(mt) + "; send application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupported("the charset is " + quote(cs) + "; JSON must be utf-8")
	}
	return nil
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, NewProblem(TypeBodyUnreadable, "the request body could not be read: %v", err)
	}
	return b, nil
}

// decodeJSONBytes decodes one JSON value from body into v, strictly.
func decodeJSONBytes(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return NewProblem(TypeEmptyBody, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return NewProblem(TypeMalformedJSON, "the request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeProblem(err)
	}
	if bytes.HasPrefix(trimmed, []byte("null")) {
		return NewProblem(TypeMalformedJSON, "the request body is JSON null; send a JSON object")
	}
	off := dec.InputOffset()
	if rest := bytes.TrimLeft(body[off:], " \t\r\n"); len(rest) > 0 {
		return NewProblem(TypeTrailingData, "the request body has %d bytes after the JSON value, starting at byte offset %d", len(rest), len(body)-len(rest))
	}
	return nil
}

func decodeProblem(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var invalid *json.InvalidUnmarshalError
	switch {
	case errors.As(err, &syntax):
		return NewProblem(TypeMalformedJSON, "invalid JSON at byte offset %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return NewProblem(TypeMalformedJSON, "the JSON value ends early")
	case errors.As(err, &typ):
		ptr := jsonPointer(typ.Field)
		detail := "must be " + jsonTypeName(typ.Type) + ", not " + typ.Value
		p := NewProblem(TypeWrongFieldType, "%s %s", displayPointer(ptr), detail)
		p.Errors = []FieldError{{Pointer: ptr, Detail: detail}}
		return p
	case errors.As(err, &invalid):
		return errorf("decode into %v: %w", invalid.Type, err) // a handler bug: 500
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := strings.Trim(name, `"`)
		ptr := "/" + escapePointer(field)
		p := NewProblem(TypeUnknownField, "the field %q is not part of this request", field)
		p.Errors = []FieldError{{Pointer: ptr, Detail: "unknown field"}}
		return p
	}
	// An UnmarshalJSON/UnmarshalText method refused a value (a bad id, a bad
	// hash): its message is about the client's input.
	return NewProblem(TypeInvalidValue, "%s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonPointer turns encoding/json's dotted field path into a JSON Pointer.
func jsonPointer(field string) string {
	if field == "" {
		return ""
	}
	parts := strings.Split(field, ".")
	for i, p := range parts {
		parts[i] = escapePointer(p)
	}
	return "/" + strings.Join(parts, "/")
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func displayPointer(p string) string {
	if p == "" {
		return "the body"
	}
	return p
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// jsonTypeName says what JSON a Go type is decoded from.
func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonTypeName(t.Elem())
	}
	return "another type"
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
