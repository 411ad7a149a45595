// node --import ./register.mjs: install hooks.mjs (see there).
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
