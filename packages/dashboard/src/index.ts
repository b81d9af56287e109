export { DashboardAccess, CSRF_HEADER, SESSION_COOKIE, SESSION_MS, type DashboardOptions, type Session } from "./session.ts";
export { mountDashboard, dashboardAuthorization, DASHBOARD_OFF } from "./routes.ts";
