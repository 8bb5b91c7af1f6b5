// The console's script (served as /static/console.js). With JavaScript, an
// action asks in a dialog; without, the server shows a confirmation page.
document.addEventListener("submit", function (event) {
  var form = event.target, question = form.getAttribute("data-confirm");
  if (!question) { return; }
  if (window.confirm(question)) { form.elements.confirmed.value = "yes"; }
  else { event.preventDefault(); }
});
