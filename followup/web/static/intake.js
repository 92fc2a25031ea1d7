// The intake page's one script, served from this origin (the page's CSP allows no inline script).
// Pre-select the phone's own time zone when the patient has not picked one, and bring the error list into view.
(function () {
  try {
    var select = document.getElementById('timezone');
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (select && zone && select.getAttribute('data-chosen') !== 'true') {
      for (var i = 0; i < select.options.length; i++) {
        if (select.options[i].value === zone) { select.selectedIndex = i; }
      }
    }
    var errors = document.getElementById('errors');
    if (errors) { errors.focus(); errors.scrollIntoView(); }
  } catch (e) { /* optional: the form works without it */ }
})();
