"use strict";
// Swagger UI on the service's own OpenAPI document. No validator badge: it would send the
// document to a public validator, and the docs must work with no network at all.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
