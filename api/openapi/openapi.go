// Package openapi holds the generated OpenAPI v2 document of the REST API,
// so the gateway can serve exactly what `make generate` produced.
package openapi

import _ "embed"

// Spec is the OpenAPI v2 (Swagger) document in JSON.
//
//go:embed orders.swagger.json
var Spec []byte
