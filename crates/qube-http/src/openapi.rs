//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand
//! (four routes do not need a generator; no Swagger UI is bundled).

use serde_json::json;

pub fn document() -> String {
    let error = json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "PostgreSQL SQLSTATE, e.g. 42P01", "examples": ["42P01"]},
                "message": {"type": "string"},
                "detail": {"type": "string", "description": "PostgreSQL's DETAIL, e.g. Key (id)=(1) already exists."},
                "hint": {"type": "string", "description": "PostgreSQL's HINT"},
                "position": {"type": "integer", "description": "1-based character offset in sql"},
                "statement": {"type": "integer", "description": "0-based index of the statement that failed"}
            }
        }}
    });
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "QubeDB HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run SQL over HTTP. Each request runs in a fresh session; several statements run in one implicit transaction (an error rolls all of them back), as a PostgreSQL simple query does; BEGIN … COMMIT inside works as usual."
        },
        "paths": {
            "/v1/query": {"post": {
                "summary": "Run one or more SQL statements",
                "operationId": "query",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryRequest"}}}},
                "responses": {
                    "200": {"description": "One result per statement", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryResponse"}}}},
                    "400": err("SQL error or malformed request"),
                    "409": err("Serialization failure or deadlock (40001, 40P01): retry"),
                    "413": err("Request body over the limit (16 MiB by default)"),
                    "500": err("Internal error")
                }
            }},
            "/health": {"get": {
                "summary": "Liveness",
                "operationId": "health",
                "responses": {"200": {"description": "The server is up", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"status": {"type": "string", "const": "ok"}}
                }}}}}
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {"200": {"description": "Prometheus text exposition format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}}
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}
            }}
        },
        "components": {"schemas": {
            "QueryRequest": {
                "type": "object",
                "required": ["sql"],
                "additionalProperties": false,
                "properties": {
                    "sql": {"type": "string", "description": "One or more statements separated by ;", "examples": ["SELECT * FROM t WHERE id = $1"]},
                    "params": {"type": "array", "description": "Values of $1, $2, …: null, boolean, number, string (cast by the engine to the parameter's type), array, object (as JSON text)", "items": {}},
                    "database": {"type": "string", "description": "Database to connect to (default qubedb)"}
                }
            },
            "QueryResponse": {
                "type": "object",
                "required": ["results"],
                "properties": {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}}}
            },
            "Result": {
                "type": "object",
                "required": ["columns", "rows", "tag"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "type": {"type": "string", "description": "PostgreSQL type name, e.g. integer, bigint, text, timestamp with time zone, jsonb, integer[]"}
                    }}},
                    "rows": {"type": "array", "items": {"type": "array", "items": {}},
                        "description": "smallint, integer, real, double: numbers; bigint and numeric: strings (exact); json/jsonb: embedded; arrays: arrays; bytea: \"\\\\x…\"; date/time types and uuid: PostgreSQL text; NULL: null"},
                    "tag": {"type": "string", "examples": ["SELECT 2", "INSERT 0 1", "CREATE TABLE"]}
                }
            },
            "Error": error
        }}
    })
    .to_string()
}
