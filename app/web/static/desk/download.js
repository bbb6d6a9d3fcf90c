// Saving a file the service answered (an attachment, a CSV report) into the browser's
// downloads, under the name its Content-Disposition gives, else `fallbackName`.

import { h } from "../js/dom.js";

/** The file name a Content-Disposition header gives, if any. */
export function fileNameOf(response, fallback) {
  const header = response.headers.get("content-disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="?([^";]+)"?/i.exec(header);
  return plain ? plain[1] : fallback;
}

/** Save a Response's body as a file; resolves to the name it was saved under. */
export async function save(response, fallbackName) {
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: fileNameOf(response, fallbackName), hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return link.download;
}
