// Swagger UI over this API's OpenAPI document (api/web/docs.py); no inline script, so the page's CSP holds.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
