;; The smallest well-behaved plugin, by hand: `info()` says "hello", `extract()` returns one file,
;; `hello.txt` with "hi\n", whatever the input. Used by the engine's embedding example.
(component
  (core module $main
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    ;; cabi_realloc: a bump allocator (the host only ever allocates here to pass the request).
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
          (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.const 16)))))
      (local.get $p))
    ;; plugin-info at 0: name, version, description (ptr, len), kinds (ptr, len), config-schema.
    (data (i32.const 0)
      "\80\00\00\00\05\00\00\00"   ;; name "hello"
      "\90\00\00\00\05\00\00\00"   ;; version "1.0.0"
      "\a0\00\00\00\17\00\00\00"   ;; description
      "\00\00\00\00\00\00\00\00"   ;; kinds: []
      "\00\00\00\00\00\00\00\00")  ;; config-schema: ""
    (data (i32.const 128) "hello")
    (data (i32.const 144) "1.0.0")
    (data (i32.const 160) "Writes hello.txt: \"hi\".")
    (func (export "info") (result i32) (i32.const 0))
    ;; result<response, extract-error> at 512: ok({files: [one file], diagnostics: [], spawns: []}).
    (data (i32.const 512)
      "\00\00\00\00"                   ;; ok
      "\58\02\00\00\01\00\00\00"   ;; files: 1 at 600
      "\00\00\00\00\00\00\00\00"   ;; diagnostics: []
      "\00\00\00\00\00\00\00\00")  ;; spawns: []
    ;; output-file at 600: path "hello.txt" at 700, contents "hi\n" at 720.
    (data (i32.const 600) "\bc\02\00\00\09\00\00\00\d0\02\00\00\03\00\00\00")
    (data (i32.const 700) "hello.txt")
    (data (i32.const 720) "hi\n")
    (func (export "extract")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.const 512)))
  (core instance $m (instantiate $main))

  (type $schema-id' (record (field "kind" string) (field "name" string) (field "version" string)))
  (export $schema-id "schema-id" (type $schema-id'))
  (type $request' (record
    (field "entry" string) (field "schema" $schema-id) (field "input" string)
    (field "config" string) (field "context" string)))
  (export $request "request" (type $request'))
  (type $severity' (enum "error" "warning" "info"))
  (export $severity "severity" (type $severity'))
  (type $diagnostic' (record
    (field "severity" $severity) (field "message" string) (field "pointer" (option string))))
  (export $diagnostic "diagnostic" (type $diagnostic'))
  (type $output-file' (record (field "path" string) (field "contents" (list u8))))
  (export $output-file "output-file" (type $output-file'))
  (type $spawn-request' (record (field "plugin" string) (field "input" string) (field "config" string)))
  (export $spawn-request "spawn-request" (type $spawn-request'))
  (type $response' (record
    (field "files" (list $output-file)) (field "diagnostics" (list $diagnostic))
    (field "spawns" (list $spawn-request))))
  (export $response "response" (type $response'))
  (type $extract-error' (record (field "message" string) (field "diagnostics" (list $diagnostic))))
  (export $extract-error "extract-error" (type $extract-error'))
  (type $plugin-info' (record
    (field "name" string) (field "version" string) (field "description" string)
    (field "kinds" (list string)) (field "config-schema" string)))
  (export $plugin-info "plugin-info" (type $plugin-info'))

  (func $info (result $plugin-info)
    (canon lift (core func $m "info") (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (export "info" (func $info))
  (func $extract (param "request" $request) (result (result $response (error $extract-error)))
    (canon lift (core func $m "extract") (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (export "extract" (func $extract))
)
