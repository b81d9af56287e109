import { simulationSlice } from "./slice.ts";

simulationSlice("pglite");
